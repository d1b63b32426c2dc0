"""Records/s on an accelerator, per model family and size: data loading alone and end to end.

    python scripts/bench_gpu.py --markdown docs/performance.md      # on a GPU machine
    python scripts/bench_gpu.py --tiny --data-dir /tmp/d            # a minute on a CPU

*Loading*: one epoch of training batches made ready on the device (gathered, moved, normalised)
with nothing else running: the in-memory splits on the device, batches gathered there (the
fast path, `data.on_device`), against batches gathered on the host and copied over per step
(pinned memory, non-blocking). *End to end*: `src/train.py`'s objects (`build`, `trainer.fit`:
Lightning, metrics, optimizer) for a few epochs, timed by the TrainingSpeed callback (training
batches only, the best epoch), for each variant of precision, `trainer.compile` and batch
placement. The datasets are the default recipes (`data=saw`, and `data=saw_audio` for the
waveform front-ends), generated first if missing. The GPU section of the markdown file is
written only when the device is a GPU; on a CPU the figures are printed (and saved with --json).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from src.callbacks.speed import TrainingSpeed
from src.data.batching import EpochBatches, VIMHLoader
from src.data.provision import build_datamodule
from src.train import build
from src.utils.config import compose_config

from mdreport import machine_line, update_section

MODELS = [
    "cnn_12k",
    "cnn_50k",
    "cnn_250k",
    "vit_28k",
    "vit_100k",
    "vit_400k",
    "lstm_23k",
    "lstm_100k",
    "gru_33k",
    "stft_linear_301k",
    "stft_cnn_77k",
    "stft_bcresnet_81k",
]
TINY_MODELS = ["cnn_12k", "vit_28k", "lstm_23k", "stft_cnn_77k"]  # one per family
# name -> (trainer.precision, trainer.compile, data.on_device)
VARIANTS = {
    "fp32": ("32-true", False, "auto"),
    "bf16": ("bf16-mixed", False, "auto"),
    "bf16+compile": ("bf16-mixed", True, "auto"),
    "bf16, host batches": ("bf16-mixed", False, False),
    "fp32, host batches": ("32-true", False, False),
}


def data_config(model: str) -> str:
    return "saw_audio" if model.startswith("stft_") else "saw"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loading_rate(dm, device: torch.device, on_device: bool, batch: int, epochs: int) -> float:
    """Best records/s over `epochs` of making the train split's batches ready on `device`."""
    inputs, codes = dm.tensors("train", device if on_device else None)
    batches = EpochBatches(len(codes), batch, shuffle=True, seed=0)
    pin = device.type == "cuda" and not on_device
    loader = VIMHLoader(batches, inputs=inputs, codes=codes, pin_memory=pin, on_device=on_device)
    rates = []
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        sync(device)
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x = dm.normalize_images(x)
            seen += len(y)
        sync(device)
        rates.append(seen / (time.perf_counter() - t0))
    return max(rates)


def train_rate(overrides: list[str], out: Path) -> tuple[float, int]:
    """(best epoch's training records/s, parameter count) of a run built like src/train.py."""
    cfg = compose_config("train", [*overrides, f"paths.output_dir={out}"])
    objects = build(cfg)
    trainer, model = objects["trainer"], objects["model"]
    trainer.fit(model=model, datamodule=objects["datamodule"])
    speed = next(cb for cb in trainer.callbacks if isinstance(cb, TrainingSpeed))
    return max(e["records_per_s"] for e in speed.epochs), sum(p.numel() for p in model.parameters())


def run(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    common = [f"data.recipe.dataset.size={args.size}", f"data.batch_size={args.batch}"]
    if args.data_dir:
        common.append(f"paths.data_dir={args.data_dir}")
    loading = []
    for data in dict.fromkeys(data_config(m) for m in args.models):
        cfg = compose_config("train", [f"data={data}", *common])
        dm = build_datamodule(cfg.data, cfg.paths.data_dir)
        dm.setup()
        for placement, on_device in (("device", True), ("host, copied per step", False)):
            rate = loading_rate(dm, device, on_device, args.batch, args.epochs)
            loading.append({"data": data, "placement": placement, "records_per_s": rate})
    quiet = [
        f"trainer.max_epochs={args.epochs}",
        "++trainer.num_sanity_val_steps=0",
        "++trainer.limit_val_batches=0",
        "trainer.accelerator=" + args.accelerator,
        "trainer.devices=1",
        "test=false",
        "logger=none",
        *(
            f"callbacks.{name}=null"
            for name in (
                "model_checkpoint",
                "early_stopping",
                "model_summary",
                "rich_progress_bar",
                "lr_monitor",
                "head_table",
            )
        ),
    ]
    end_to_end = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            row = {"model": model, "data": data_config(model), "records_per_s": {}}
            for variant in args.variants:
                precision, compiled, on_device = VARIANTS[variant]
                overrides = [
                    f"model={model}",
                    f"data={data_config(model)}",
                    *common,
                    *quiet,
                    f"trainer.precision={precision}",
                    f"trainer.compile={str(compiled).lower()}",
                    f"data.on_device={str(on_device).lower()}",
                ]
                rate, params = train_rate(overrides, Path(tmp) / f"run{len(os.listdir(tmp))}")
                row["records_per_s"][variant] = rate
                row["params"] = params
            end_to_end.append(row)
    return {"device": str(device), "loading": loading, "end_to_end": end_to_end}


def markdown(result: dict, args: argparse.Namespace) -> str:
    variants = args.variants
    lines = [
        "## GPU",
        "",
        "`python scripts/bench_gpu.py --markdown docs/performance.md`: training records/s, "
        f"batch {args.batch}, best of {args.epochs} epochs, datasets of {args.size:,} records "
        "(default recipes). *Loading*: the train split's batches made ready on the device and "
        "nothing else; *device*: the in-memory split held on the GPU, batches gathered there "
        "(`data.on_device=auto`); *host*: gathered on the host, copied per step from pinned "
        "memory. *End to end*: `src/train.py`'s trainer and module, training batches only.",
        "",
        f"Machine: {machine_line()}.",
        "",
        "| data | batches | loading records/s |",
        "|---|---|---:|",
        *(
            f"| {r['data']} | {r['placement']} | {r['records_per_s']:,.0f} |"
            for r in result["loading"]
        ),
        "",
        "| model | parameters | " + " | ".join(f"{v} records/s" for v in variants) + " |",
        "|---|---:|" + "---:|" * len(variants),
        *(
            f"| {r['model']} | {r['params']:,} | "
            + " | ".join(f"{r['records_per_s'][v]:,.0f}" for v in variants)
            + " |"
            for r in result["end_to_end"]
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", help=f"default: all ({', '.join(MODELS)})")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS))
    ap.add_argument("--size", type=int, default=16384, help="records per dataset (all splits)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-dir", help="where the datasets are (generated if missing)")
    ap.add_argument("--tiny", action="store_true", help="a quick check: 4 models, 256 records")
    ap.add_argument("--json", type=Path, help="also save the figures here")
    ap.add_argument("--markdown", help="update the GPU section of this file (on a GPU only)")
    args = ap.parse_args(argv)
    gpu = torch.cuda.is_available()
    args.accelerator = "gpu" if gpu else "cpu"
    if args.tiny:
        args.size, args.batch, args.epochs = 256, 32, 2
    args.models = args.models or (TINY_MODELS if args.tiny else MODELS)
    default_variants = ["fp32", "bf16", "bf16+compile", "bf16, host batches"]
    args.variants = args.variants or (default_variants if gpu else ["fp32", "fp32, host batches"])
    # The tiny check gains nothing from intra-op threads, and they stall on shared cores.
    torch.set_num_threads(1 if args.tiny else os.cpu_count() or 1)

    result = run(args)
    console = Console()
    table = Table(title=f"Loading, batch {args.batch}, {result['device']}")
    for col in ("data", "batches", "records/s"):
        table.add_column(col, justify="right")
    for r in result["loading"]:
        table.add_row(r["data"], r["placement"], f"{r['records_per_s']:,.0f}")
    console.print(table)
    table = Table(title=f"End to end, batch {args.batch}, {result['device']}")
    for col in ("model", "parameters", *args.variants):
        table.add_column(col, justify="right")
    for r in result["end_to_end"]:
        rates = (f"{r['records_per_s'][v]:,.0f}" for v in args.variants)
        table.add_row(r["model"], f"{r['params']:,}", *rates)
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        if gpu:
            update_section(args.markdown, "bench_gpu", markdown(result, args))
        else:
            console.print(f"No GPU: {args.markdown} left as it is (its GPU section is for GPUs)")
    return result


if __name__ == "__main__":
    main()
