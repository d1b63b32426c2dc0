"""Summarise finished training runs (one command, several seeds) as markdown: their test
metrics and the sound of their test predictions beside the baselines.

    python scripts/report_run.py logs/train/runs/<run> [<run> ...] \
        [--markdown docs/results.md --section NAME]

Everything stated comes from the run folders: the command and settings from `.hydra/`
(early stopping as configured, epochs as run), the machine from `speed.json`, the metrics from
the logs, and the audio distances from each run's best checkpoint, its test predictions
rendered with the dataset's synth (src/evaluation/sound.py). Several runs are reported as
mean ± std, one run is labelled a single run. The baselines (chance, train mean, 1-NN on
pixels, linear probe, and the grid ceiling oracle_class) are computed on the run's dataset and
scored like the model; a model "beats" one only by 3 standard errors over its seeds.
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
from src.evaluation.sound import baseline_sound, model_sound
from src.metrics import metric_key
from src.metrics.baselines import BASELINES, datamodule_baselines
from src.models.tasks import datamodule_state, module_from_checkpoint, read_checkpoint

from compare_models import findings
from mdreport import markdown_table, results_table, sound_table, spread, update_section


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


def run_sound(run: Path, data_dir: Path) -> dict:
    """Audio distances of the run's best checkpoint on its test split."""
    best = sorted((run / "checkpoints").glob("epoch_*.ckpt"))[-1]
    ckpt = read_checkpoint(best)
    dm = VIMHDataModule(data_dir)
    dm.load_state_dict(datamodule_state(ckpt, dm))
    dm.setup()
    return model_sound(module_from_checkpoint(ckpt), dm)


def summarise(runs: list[Path]) -> str:
    run = runs[0]
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    overrides = [
        o for o in OmegaConf.load(run / ".hydra" / "overrides.yaml") if not o.startswith("seed=")
    ]
    seeds = [OmegaConf.load(r / ".hydra" / "config.yaml").seed for r in runs]
    data_dir = dataset_folder(cfg.data, cfg.paths.data_dir, generate=False)
    info = read_info(data_dir)
    ident = {r["parameter"]: r for r in info.raw.get("identifiability") or []}
    speeds = [
        json.loads((r / "speed.json").read_text()) if (r / "speed.json").exists() else {}
        for r in runs
    ]
    budget = json.loads((run / "budget.json").read_text()) if (run / "budget.json").exists() else {}
    epochs = [len(sp.get("epochs", [])) for sp in speeds]
    best = [sorted((r / "checkpoints").glob("epoch_*.ckpt")) for r in runs]
    command = "python src/train.py " + " ".join(overrides) if overrides else "make train"
    heads = [p.name for p in info.params]
    dm = VIMHDataModule(data_dir)
    base, base_sound = datamodule_baselines(dm), baseline_sound(dm)
    metrics = [test_metrics(r) for r in runs]
    sounds = [run_sound(r, data_dir) for r in runs]
    name = f"model ({cfg.model.net._target_.rsplit('.', 1)[-1]})"
    cols, rows = results_table(
        heads, [(b, [base[b]], {}) for b in BASELINES] + [(name, metrics, {})]
    )
    scols, srows = sound_table([(b, [base_sound[b]]) for b in BASELINES] + [(name, sounds)])
    what = (
        f"mean ± std over {len(runs)} runs (seeds {', '.join(map(str, seeds))})"
        if len(runs) > 1
        else f"a single run (seed {seeds[0]}): no spread is known"
    )
    rates = [max((e["records_per_s"] for e in sp.get("epochs", [])), default=0) for sp in speeds]
    lines = [
        f"Command: `{command}`, run with "
        + ", ".join(f"`seed={s}`" for s in seeds)
        + f"; {stopping(cfg, max(epochs), budget)}"
        + (f" (epochs run: {', '.join(map(str, epochs))})" if len(set(epochs)) > 1 else "")
        + ".",
        f"Dataset: `{data_dir.name}` ({info.raw.get('train_samples')} train / "
        f"{info.raw.get('val_samples')} val / {info.raw.get('test_samples')} test records).",
        f"Best checkpoints: {', '.join(f'`{b[-1].name}`' if b else '-' for b in best)}; "
        f"training speed {spread(rates, ',.0f')} records/s.",
        f"Machine (from the first run's speed.json): {speeds[0].get('machine', 'not recorded')}.",
        "",
        f"Test split, the model as {what}; score = mean skill over heads (1 - MAE / MAE of the "
        "train-mean guess); `oracle_class` is the true class at its grid value, the ceiling of "
        "any predictor of grid values.",
        "",
        *markdown_table(cols, rows),
        "",
        "By the sound: each test prediction rendered with the dataset's synth and the record's "
        "true nuisance, against the test note (mean and median over the test records).",
        "",
        *markdown_table(scols, srows),
        "",
        "| head | classes | unit | identifiability | model acc within 1 class | model skill |",
        "|---|---:|---|---|---:|---:|",
    ]
    for p in info.params:
        verdict = ident.get(p.name, {}).get("verdict", "-")
        within = [m.get(metric_key("test", "acc_within1", p.name), float("nan")) for m in metrics]
        skill = [m.get(metric_key("test", "skill", p.name), float("nan")) for m in metrics]
        lines.append(
            f"| {p.name} | {p.num_classes} | {p.unit or '-'} | {verdict} | "
            f"{spread(within, '.3f')} | {spread(skill, '.3f')} |"
        )
    found = findings(
        {name: [{"metrics": m, "sound": s, "params": 0} for m, s in zip(metrics, sounds)]},
        base,
        base_sound,
        heads,
    )
    lines += ["", "Computed from the tables (a claim needs 3 standard errors over the seeds):", ""]
    lines += [f for f in found if "for its size" not in f and "of the models" not in f]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="run folders of one command")
    ap.add_argument("--markdown")
    ap.add_argument("--section", default="default_experiment")
    ap.add_argument("--title", default="Default experiment (`make train`)")
    args = ap.parse_args()
    text = summarise(args.runs)
    print(text)
    if args.markdown:
        update_section(args.markdown, args.section, f"## {args.title}\n\n{text}")


if __name__ == "__main__":
    main()
