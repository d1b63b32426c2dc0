"""Train every model family and size on the same dataset, epoch budget and seeds; tabulate the
results beside the baselines.

    python scripts/compare_models.py --data saw --epochs 10 --seeds 3 \
        [--models cnn_10k vit_25k ...] [--markdown docs/models.md]

Each (model, seed) runs through `src/train.py`'s task function: the run's seed sets the weights
and the data order, early stopping is off and the best-validation checkpoint is tested.
Waveform models (a net that takes audio) read `<data>_audio`: the same recipe with the
waveforms stored. Reported per model: parameters (total, and trainable for front-end models),
test score (mean skill over heads), per-head accuracy and MAE, as mean ± std over seeds, and
training records/s; the baselines (chance, train mean, 1-NN on pixels, linear probe) are rows
of the same table. The command that reproduces a table is printed above it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from rich.console import Console
from rich.table import Table

from src.data.provision import build_datamodule
from src.metrics import head_metrics
from src.metrics.baselines import BASELINES, datamodule_baselines
from src.models.multihead_module import net_input_kind
from src.paths import CONFIG_DIR
from src.train import train
from src.utils.config import compose_config

from mdreport import machine_line, markdown_table, results_table, update_section

ALL_MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
QUIET = [
    "callbacks.early_stopping=null",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "extras.print_config=false",
    "extras.enforce_tags=false",
]


def data_for(model: str, data: str) -> str:
    net = compose_config("train", [f"model={model}"]).model.net
    return f"{data}_audio" if net_input_kind(net._target_) == "audio" else data


def data_overrides(data: str, size: int | None) -> list[str]:
    return [f"data={data}"] + ([f"data.recipe.dataset.size={size}"] if size else [])


def run_one(
    model: str, data: str, epochs: int, seed: int, out: Path, size: int | None = None
) -> dict:
    """Train and test one model with one seed; returns its test metrics and facts."""
    overrides = [
        f"model={model}",
        *data_overrides(data_for(model, data), size),
        f"trainer.max_epochs={epochs}",
        f"seed={seed}",
        *QUIET,
    ]
    cfg = compose_config("train", overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    metrics, objects = train(cfg)
    model_obj = objects["model"]
    speed = json.loads((out / "speed.json").read_text())
    return {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "params": sum(p.numel() for p in model_obj.parameters()),
        "trainable": sum(p.numel() for p in model_obj.parameters() if p.requires_grad),
        "records_per_s": max(e["records_per_s"] for e in speed["epochs"]),
    }


def baselines(data: str, size: int | None = None) -> dict[str, dict[str, float]]:
    cfg = compose_config("train", data_overrides(data, size))
    return datamodule_baselines(build_datamodule(cfg.data, cfg.paths.data_dir))


def table(results: dict[str, list[dict]], base: dict, heads: list[str]):
    """Baselines first, then each model over its seeds."""
    entries = [(name, [base[name]], {}) for name in BASELINES]
    for model, runs in results.items():
        params = f"{runs[0]['params']:,}"
        if runs[0]["trainable"] != runs[0]["params"]:
            params += f" ({runs[0]['trainable']:,})"
        rate = statistics.fmean(r["records_per_s"] for r in runs)
        cells = {"parameters (trainable)": params, "train records/s": f"{rate:,.0f}"}
        entries.append((model, [r["metrics"] for r in runs], cells))
    return results_table(heads, entries)


def command(args: argparse.Namespace) -> str:
    return (
        f"python scripts/compare_models.py --data {args.data} --epochs {args.epochs} "
        f"--seeds {args.seeds}"
        + (f" --size {args.size}" if args.size else "")
        + f" --models {' '.join(args.models)}"
        + (f" --markdown {args.markdown}" if args.markdown else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="saw", help="data config (saw, moog_hard, fm, ...)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per model")
    ap.add_argument("--size", type=int, help="records of the dataset (default: the recipe's)")
    ap.add_argument("--models", nargs="+", default=ALL_MODELS)
    ap.add_argument("--markdown", help="update this dataset's section of this markdown file")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: small models on shared cores)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Console().print(f"[dim]{command(args)}[/]")

    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            results[model] = [
                run_one(
                    model, args.data, args.epochs, seed, Path(tmp) / f"{model}_{seed}", args.size
                )
                for seed in range(args.seeds)
            ]
    base = baselines(args.data, args.size)
    heads = list(head_metrics(base["chance"], "test"))
    cols, rows = table(results, base, heads)
    out = Table(title=f"{args.data}: {args.epochs} epochs, {args.seeds} seeds (mean ± std)")
    for c in cols:
        out.add_column(c, justify="right")
    for r in rows:
        out.add_row(*r)
    Console().print(out)
    if args.markdown:
        lines = [
            f"## Dataset `{args.data}`, {args.epochs} epochs, {args.seeds} seeds",
            "",
            f"`{command(args)}`",
            "",
            f"Machine: {machine_line()}.",
            "",
            *markdown_table(cols, rows),
        ]
        update_section(args.markdown, f"compare_models_{args.data}", "\n".join(lines))


if __name__ == "__main__":
    main()
