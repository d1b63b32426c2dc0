"""Summarise a finished training run as markdown: its test metrics beside the baselines.

    python scripts/report_run.py logs/train/runs/<run> [--markdown docs/results.md --section NAME]

Everything stated comes from the run folder itself: the command and settings from its
`.hydra/` config (early stopping as configured, epochs as run), the machine from its
`speed.json`, the metrics from its logs. The baselines (chance, train mean, 1-NN on pixels,
linear probe) are computed on the run's dataset and scored like the model.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from omegaconf import OmegaConf

from src.data.datamodule import VIMHDataModule
from src.data.provision import dataset_folder
from src.data.vimh import read_info
from src.metrics import metric_key
from src.metrics.baselines import BASELINES, datamodule_baselines

from mdreport import markdown_table, results_table, update_section


def test_metrics(run: Path) -> dict[str, float]:
    """The run's test metrics, from its per-head CSV and the last test row of its CSV log."""
    out = {}
    with open(run / "test_metrics_per_head.csv") as f:
        for row in csv.DictReader(f):
            for name, value in row.items():
                if name != "head" and value != "":
                    out[metric_key("test", name, row["head"])] = float(value)
    for log in sorted((run / "csv").rglob("metrics.csv")):
        with open(log) as f:
            for row in csv.DictReader(f):
                for key in ("score", "acc_mean", "loss"):
                    value = row.get(metric_key("test", key), "")
                    if value:
                        out[metric_key("test", key)] = float(value)
    return out


def stopping(cfg, epochs_run: int, budget: dict) -> str:
    """How the run ended; with `trainer.max_epochs=auto` the epochs and patience are the
    training budget's (the run's budget.json)."""
    es = (cfg.get("callbacks") or {}).get("early_stopping")
    max_epochs = budget.get("epochs", cfg.trainer.max_epochs)
    patience = budget.get("early_stopping_patience") or (es.patience if es else None)
    if not es:
        return f"{epochs_run} of {max_epochs} epochs, no early stopping"
    stopped = "stopped early" if epochs_run < max_epochs else "did not stop early"
    return (
        f"{epochs_run} of {max_epochs} epochs; early stopping on {es.monitor} "
        f"(patience {patience}) {stopped}"
    )


def summarise(run: Path) -> str:
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    overrides = OmegaConf.load(run / ".hydra" / "overrides.yaml")
    data_dir = dataset_folder(cfg.data, cfg.paths.data_dir, generate=False)
    info = read_info(data_dir)
    ident = {r["parameter"]: r for r in info.raw.get("identifiability") or []}
    speed = json.loads((run / "speed.json").read_text()) if (run / "speed.json").exists() else {}
    budget = json.loads((run / "budget.json").read_text()) if (run / "budget.json").exists() else {}
    epochs = speed.get("epochs", [])
    best = sorted((run / "checkpoints").glob("epoch_*.ckpt"))
    command = "python src/train.py " + " ".join(overrides) if overrides else "make train"
    heads = [p.name for p in info.params]
    base = datamodule_baselines(VIMHDataModule(data_dir))
    cols, rows = results_table(
        heads,
        [(name, [base[name]], {}) for name in BASELINES]
        + [(f"model ({cfg.model.net._target_.rsplit('.', 1)[-1]})", [test_metrics(run)], {})],
    )
    lines = [
        f"Command: `{command}`; seed {cfg.seed}; {stopping(cfg, len(epochs), budget)}.",
        f"Dataset: `{data_dir.name}` ({info.raw.get('train_samples')} train / "
        f"{info.raw.get('val_samples')} val / {info.raw.get('test_samples')} test records).",
        f"Best checkpoint: `{best[-1].name if best else '-'}`; training speed "
        f"{max((e['records_per_s'] for e in epochs), default=0):,.0f} records/s.",
        f"Machine (from the run's speed.json): {speed.get('machine', 'not recorded')}.",
        "",
        "Test split; score = mean skill over heads (1 - MAE / MAE of the train-mean guess).",
        "",
        *markdown_table(cols, rows),
        "",
        "| head | classes | unit | identifiability | model acc within 1 class | model skill |",
        "|---|---:|---|---|---:|---:|",
    ]
    metrics = test_metrics(run)
    for p in info.params:
        verdict = ident.get(p.name, {}).get("verdict", "-")
        within = metrics.get(metric_key("test", "acc_within1", p.name), float("nan"))
        skill = metrics.get(metric_key("test", "skill", p.name), float("nan"))
        lines.append(
            f"| {p.name} | {p.num_classes} | {p.unit or '-'} | {verdict} | {within:.3f} "
            f"| {skill:.3f} |"
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
