"""Summarise a finished training run as markdown (per-head test metrics, data, model, time).

python scripts/report_run.py logs/train/runs/<run> [--markdown docs/results.md --section NAME]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from omegaconf import OmegaConf

from src.data.provision import dataset_folder
from src.data.vimh import read_info

from mdreport import machine_line, update_section


def summarise(run: Path) -> str:
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
    with open(run / "test_metrics_per_head.csv") as f:
        rows = list(csv.DictReader(f))
    data_dir = dataset_folder(cfg.data, cfg.paths.data_dir, generate=False)
    info = read_info(data_dir)
    ident = {r["parameter"]: r for r in info.raw.get("identifiability") or []}
    specs = {p.name: p for p in info.params}
    ckpts = sorted((run / "checkpoints").glob("epoch_*.ckpt"))
    speed = json.loads((run / "speed.json").read_text()) if (run / "speed.json").exists() else {}
    epochs = speed.get("epochs", [])
    command = "python src/train.py " + " ".join(overrides) if overrides else "make train"
    lines = [
        f"Command: `{command}` (model `{cfg.model.net._target_.rsplit('.', 1)[-1]}`, "
        f"seed {cfg.seed}, max {cfg.trainer.max_epochs} epochs with early stopping on val/score).",
        f"Dataset: `{data_dir.name}` ({info.raw.get('train_samples')} train / "
        f"{info.raw.get('val_samples')} val / {info.raw.get('test_samples')} test records).",
        f"Best checkpoint: `{ckpts[-1].name if ckpts else '-'}`; epochs run: {len(epochs)}; "
        f"training speed {max((e['records_per_s'] for e in epochs), default=0):,.0f} records/s.",
        f"Machine: {machine_line()}.",
        "",
        "| head | classes | chance | test accuracy | test MAE | identifiability |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        spec = specs[r["head"]]
        unit = f" {spec.unit}" if spec.unit else ""
        learn = ident.get(r["head"], {}).get("learnable")
        lines.append(
            f"| {r['head']} | {spec.num_classes} | {1 / spec.num_classes:.3f} | "
            f"{float(r['acc']):.4f} | {float(r['mae']):.4g}{unit} | "
            f"{'learnable' if learn else 'NOT learnable' if learn is False else '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--markdown")
    ap.add_argument("--section", default="default_experiment")
    ap.add_argument("--title", default="Default experiment (`make train`)")
    args = ap.parse_args()
    text = summarise(args.run)
    print(text)
    if args.markdown:
        update_section(args.markdown, args.section, f"## {args.title}\n\n{text}")


if __name__ == "__main__":
    main()
