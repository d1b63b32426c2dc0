"""Train every model family and size on the same dataset and epoch budget; tabulate the results.

    python scripts/compare_models.py [--data saw] [--epochs 5] [--models cnn_10k vit_25k ...]
                                     [--markdown docs/models.md]

Each model runs through `src/train.py`'s task function (same seed, early stopping off, the
best-validation checkpoint tested). Waveform models (`stft_*`) read the `<data>_audio` dataset:
the same synth, seed and labels with the waveforms stored. Reported: parameters (total, and
trainable for front-end models), test mean accuracy over heads, MAE per head in natural units,
and training records/s (TrainingSpeed callback, validation excluded).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from rich.console import Console
from rich.table import Table

from src.metrics import head_metrics, metric_key
from src.models.multihead_module import net_input_kind
from src.paths import CONFIG_DIR
from src.train import train
from src.utils.config import compose_config

from mdreport import machine_line, update_section

ALL_MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def run_one(model: str, data: str, epochs: int, out: Path) -> dict:
    """Train and test one model; waveform models read the `<data>_audio` dataset."""
    net = compose_config("train", [f"model={model}"]).model.net
    if net_input_kind(net._target_) == "audio":
        data = f"{data}_audio"
    overrides = [
        f"model={model}",
        f"data={data}",
        f"trainer.max_epochs={epochs}",
        "callbacks.early_stopping=null",
        "callbacks.rich_progress_bar=null",
        "callbacks.model_summary=null",
        "extras.print_config=false",
        "extras.enforce_tags=false",
    ]
    cfg = compose_config("train", overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    metrics, objects = train(cfg)
    model_obj = objects["model"]
    speed = json.loads((out / "speed.json").read_text())
    heads = model_obj.head_names
    per_head = head_metrics(metrics, "test")
    return {
        "model": model,
        "data": data,
        "params": sum(p.numel() for p in model_obj.parameters()),
        "trainable": sum(p.numel() for p in model_obj.parameters() if p.requires_grad),
        "acc_mean": float(metrics[metric_key("test", "acc_mean")]),
        "score": float(metrics[metric_key("test", "score")]),
        "acc": {h: per_head[h]["acc"] for h in heads},
        "mae": {h: per_head[h]["mae"] for h in heads},
        "units": {s.name: s.unit for s in model_obj.specs},
        "classes": {s.name: s.num_classes for s in model_obj.specs},
        "records_per_s": max(e["records_per_s"] for e in speed["epochs"]),
    }


def markdown(rows: list[dict], data: str, epochs: int) -> str:
    heads = list(rows[0]["mae"])
    units = rows[0]["units"]
    chance = ", ".join(f"{h} {1 / rows[0]['classes'][h]:.3f}" for h in heads)
    head_cols = " | ".join(f"{h} acc | {h} MAE ({units[h] or '-'})" for h in heads)
    lines = [
        f"## Dataset `{data}`, {epochs} epochs",
        "",
        "`python scripts/compare_models.py "
        f"--data {data} --epochs {epochs} --markdown docs/models.md`. Chance accuracy: {chance}.",
        "",
        f"Machine: {machine_line()}.",
        "",
        "| model | parameters (trainable) | test mean acc | score | "
        f"{head_cols} | train records/s |",
        "|---|---:|---:|---:|" + "---:|---:|" * len(heads) + "---:|",
    ]
    for r in rows:
        params = f"{r['params']:,}"
        if r["trainable"] != r["params"]:
            params += f" ({r['trainable']:,})"
        cells = " | ".join(f"{r['acc'][h]:.3f} | {r['mae'][h]:.3g}" for h in heads)
        lines.append(
            f"| {r['model']} | {params} | {r['acc_mean']:.3f} | {r['score']:.4f} | {cells} "
            f"| {r['records_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="saw", help="data config (saw, moog, fm)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=ALL_MODELS)
    ap.add_argument("--markdown", help="update this dataset's section of this markdown file")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            rows.append(run_one(model, args.data, args.epochs, Path(tmp) / model))
    table = Table(title=f"{args.data}, {args.epochs} epochs")
    for col in ("model", "params", "acc_mean", "score", "records/s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["model"],
            f"{r['params']:,}",
            f"{r['acc_mean']:.3f}",
            f"{r['score']:.4f}",
            f"{r['records_per_s']:,.0f}",
        )
    Console().print(table)
    if args.markdown:
        update_section(
            args.markdown, f"compare_models_{args.data}", markdown(rows, args.data, args.epochs)
        )


if __name__ == "__main__":
    main()
