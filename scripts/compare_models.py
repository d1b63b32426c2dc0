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
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from src.train import train  # noqa: E402
from src.utils.mdreport import machine_line, update_section  # noqa: E402

ALL_MODELS = sorted(p.stem for p in (ROOT / "configs" / "model").glob("*.yaml"))


def run_one(model: str, data: str, epochs: int, out: Path) -> dict:
    if model.startswith("stft_"):
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
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
        metrics, objects = train(cfg)
    model_obj = objects["model"]
    speed = json.loads((out / "speed.json").read_text())
    heads = model_obj.head_names
    return {
        "model": model,
        "data": data,
        "params": sum(p.numel() for p in model_obj.parameters()),
        "trainable": sum(p.numel() for p in model_obj.parameters() if p.requires_grad),
        "acc_mean": float(metrics["test/acc_mean"]),
        "score": float(metrics["test/score"]),
        "acc": {h: float(metrics[f"test/{h}/acc"]) for h in heads},
        "mae": {h: float(metrics[f"test/{h}/mae"]) for h in heads},
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
