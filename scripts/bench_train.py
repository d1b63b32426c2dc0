"""Training throughput: src/train.py against a bare PyTorch loop on the same tensors.

    python scripts/bench_train.py [--models cnn_12k cnn_50k cnn_250k] [--compile] [--markdown PATH]

For each model: (1) a bare loop (the same MultiheadModule, AdamW, the dataset as one in-memory
tensor, random batches, normalisation per batch: no Lightning, no metrics, no logging), and
(2) `python src/train.py` in a subprocess for 2 epochs, timed by the TrainingSpeed callback
(records/s from the first batches to the last training batch of each epoch, validation
excluded; the best epoch is reported). It also reports the wall time from launching the command
to its first training step. The default dataset is generated first if it is missing. With
--compile, the first model also runs with `trainer.compile=true` (torch.compile), which is why
that option is off by default on a CPU. Targets (issue 28) are marked met or missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from rich.console import Console
from rich.table import Table

from src.data.provision import build_datamodule
from src.paths import PROJECT_ROOT
from src.utils.config import compose_config

from mdreport import load_note, machine_line, target_status, update_section

# Issue 28's targets: train.py within 5% of the bare loop, three seconds to the first step.
RATIO_TARGET = 0.95
LAUNCH_TARGET_S = 3.0


def bare_loop(data_dir: Path, model_name: str, batch: int, epochs: int) -> float:
    """Records/s of a plain PyTorch training loop over the in-memory train split."""
    cfg = compose_config("train", [f"model={model_name}", "data=vimh", f"data.data_dir={data_dir}"])
    dm = build_datamodule(cfg.data, cfg.paths.data_dir)
    images, codes = dm.tensors("train")
    mean, std = images.float().mean() / 255, images.float().std() / 255
    model = instantiate(cfg.model, **dm.spec.model_kwargs())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.model.optimizer.lr)
    model.train()
    n = len(images)
    rates = []
    for _ in range(epochs):
        perm = torch.randperm(n)
        seen, t0 = 0, None
        for i, start in enumerate(range(0, n, batch)):
            if i == 2:
                t0, seen = time.perf_counter(), 0
            idx = perm[start : start + batch]
            x = (images[idx].float().div_(255) - mean) / std
            loss, _ = model.compute_loss(x, codes[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
        rates.append(seen / (time.perf_counter() - t0))
    return max(rates)


def through_train_py(
    data_dir: Path, model_name: str, batch: int, epochs: int, extra: tuple[str, ...] = ()
) -> tuple[float, float]:
    """(best epoch records/s, seconds from launch to the first training step)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [
            sys.executable,
            str(PROJECT_ROOT / "src" / "train.py"),
            f"model={model_name}",
            "data=vimh",
            f"data.data_dir={data_dir}",
            f"data.batch_size={batch}",
            f"trainer.max_epochs={epochs}",
            "test=false",
            "callbacks.early_stopping=null",
            "extras.print_config=false",
            f"hydra.run.dir={run}",
            *extra,
        ]
        t_launch = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        speed = json.loads((run / "speed.json").read_text())
    best = max(e["records_per_s"] for e in speed["epochs"])
    return best, speed["first_step_time"] - t_launch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", nargs="+", default=["cnn_12k", "cnn_50k", "cnn_250k"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also the first model compiled")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    ap.add_argument("--markdown", help="update the training section of this markdown file")
    args = ap.parse_args()
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    pinned = (f"trainer.threads={threads}",)

    cfg = compose_config("train")
    data_dir = build_datamodule(cfg.data, cfg.paths.data_dir).data_dir
    rows = []
    for name in args.models:
        bare = bare_loop(data_dir, name, args.batch, args.epochs)
        lit, startup = through_train_py(data_dir, name, args.batch, args.epochs, pinned)
        rows.append((name, bare, lit, startup))
    if args.compile:
        name, bare = rows[0][0], rows[0][1]
        lit, startup = through_train_py(
            data_dir, name, args.batch, args.epochs, (*pinned, "trainer.compile=true")
        )
        rows.append((f"{name}, trainer.compile=true", bare, lit, startup))

    def cells(row: tuple) -> list[str]:
        name, bare, lit, startup = row
        ratio = lit / bare
        return [
            name,
            f"{bare:,.0f}",
            f"{lit:,.0f}",
            f"{ratio:.2f} ({target_status(ratio, RATIO_TARGET)})",
            f"{startup:.1f} s ({target_status(startup, LAUNCH_TARGET_S, at_least=False)})",
        ]

    cols = [
        "model",
        "bare loop records/s",
        "train.py records/s",
        f"train.py / bare (target >= {RATIO_TARGET})",
        f"launch -> first step (target <= {LAUNCH_TARGET_S:.0f} s)",
    ]
    table = Table(title=f"Training throughput, {data_dir.name}, batch {args.batch}")
    for col in cols:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*cells(row))
    Console().print(table)
    if args.markdown:
        lines = [
            "## Training",
            "",
            "`python scripts/bench_train.py --markdown docs/performance.md`: training records/s "
            f"on the default dataset (`{data_dir.name}`), batch {args.batch}, best of "
            f"{args.epochs} epochs. *bare loop*: the same network and optimizer in a plain "
            "PyTorch loop over the in-memory tensors; *train.py*: the full `src/train.py` run "
            "(Lightning, metrics, logging, checkpoints), timed by the TrainingSpeed callback with "
            "validation excluded. *launch -> 1st step*: wall time from starting "
            "`python src/train.py` to its first training step. Targets: issue 28.",
            "",
            f"Machine: {machine_line()}.",
            "",
            "| " + " | ".join(cols) + " |",
            "|---|---:|---:|---:|---:|",
            *("| " + " | ".join(cells(r)) + " |" for r in rows),
        ]
        if args.compile:
            plain, compiled = rows[0], rows[-1]
            speed = compiled[2] / plain[2]
            later = compiled[3] - plain[3]
            verdict = (
                "slower, so `trainer.compile` stays off by default on a CPU"
                if speed < 1
                else "faster here, but the default stays off on a CPU for the startup cost"
            )
            lines += [
                "",
                "*trainer.compile=true*: the same run with the network compiled by torch.compile "
                f"(its bare loop is the uncompiled one): {speed:.2f}x the records/s of the plain "
                f"train.py run and {later:.0f} s more to the first step (torch keeps compiled "
                "kernels in an on-disk cache: the first compile on a machine takes far longer), "
                f"i.e. {verdict} (configs/trainer/default.yaml; `trainer=gpu_compile` turns it "
                "on for a GPU).",
            ]
        note = load_note()
        if note:
            lines += ["", note]
        update_section(args.markdown, "bench_train", "\n".join(lines))


if __name__ == "__main__":
    main()
