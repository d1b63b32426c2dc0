"""Train every model family and size on the same dataset, epoch budget and seeds; tabulate the
results beside the baselines, by parameter error and by the sound.

    python scripts/compare_models.py --data saw --epochs 10 --seeds 3 \
        [--models cnn_12k vit_28k ...] [--head-modes classification offset ...] \
        [--markdown docs/models.md] [--workers 2]

Each (model, seed) runs through `src/train.py`'s task function: the run's seed sets the weights
and the data order, early stopping is off and the best-validation checkpoint is tested.
Waveform models (a net that takes audio) read `<data>_audio`: the same recipe with the
waveforms stored. Reported per model: parameters (total, and trainable for front-end models),
test score (mean skill over heads), per-head accuracy and MAE, as mean ± std over seeds, and
training records/s; the baselines (chance, train mean, 1-NN on pixels, linear probe and the
grid ceiling `oracle_class`) are rows of the same table. A second table judges every predictor
by the sound (src/evaluation/sound.py): each test prediction rendered with the dataset's synth
and the record's true nuisance, compared with the test note (multi-scale log-mel, LSD, spectral
convergence, MFCC-DTW, f0 error, RMS-envelope cosine; mean and median over the test records).
The findings under the tables are computed here: a model "beats" a baseline only when its mean
over seeds is better by at least 3 standard errors. `--head-modes` trains each model once per
head mode (the comparison of continuous estimates). The command that reproduces a table is
printed above it. Each finished
run's result is kept under `--cache` (default logs/compare_models/), so an interrupted
comparison resumes where it stopped; `--workers` trains that many runs at once (one process
each, `--threads` torch threads per process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from src.data.provision import build_datamodule
from src.evaluation.sound import baseline_sound, model_sound
from src.metrics import head_metrics, metric_key
from src.metrics.baselines import BASELINES, datamodule_baselines
from src.models.multihead_module import net_input_kind
from src.paths import CONFIG_DIR, PROJECT_ROOT
from src.train import train
from src.utils.config import compose_config

from mdreport import machine_line, markdown_table, results_table, sound_table, update_section

# Parameter-estimation models only (the codec's configs have codec_report.py, the sequence
# models sequence_results.py).
ALL_MODELS = sorted(
    p.stem
    for p in (CONFIG_DIR / "model").glob("*.yaml")
    if "multihead_module" in OmegaConf.load(p).get("_target_", "")
)
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


def label(model: str, mode: str | None) -> str:
    return model if mode is None else f"{model}+{mode.replace('/', ',')}"


def mode_override(mode: str) -> str:
    """A --head-modes entry as a Hydra override: a mode for every head, or per head as
    `pitch=offset/other=regression` (a mapping; `other`: the heads it does not name)."""
    if "=" not in mode:
        return f"model.head_modes={mode}"
    pairs = dict(part.split("=", 1) for part in mode.split("/"))
    return "model.head_modes={" + ",".join(f"{k}:{v}" for k, v in pairs.items()) + "}"


def run_one(
    model: str,
    data: str,
    epochs: int,
    seed: int,
    out: Path,
    size: int | None = None,
    mode: str | None = None,
) -> dict:
    """Train and test one model with one seed; returns its test metrics, the audio distances
    of its test predictions, and facts."""
    overrides = [
        f"model={model}",
        *data_overrides(data_for(model, data), size),
        f"trainer.max_epochs={epochs}",
        f"seed={seed}",
        *([mode_override(mode)] if mode else []),
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
        "sound": model_sound(model_obj, objects["datamodule"]),
        "params": sum(p.numel() for p in model_obj.parameters()),
        "trainable": sum(p.numel() for p in model_obj.parameters() if p.requires_grad),
        "records_per_s": max(e["records_per_s"] for e in speed["epochs"]),
    }


def cached(path: Path, make) -> dict:
    """`make()`'s result, kept as JSON at `path` (written atomically) and read back after."""
    if path.exists():
        return json.loads(path.read_text())
    result = make()
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)
    return result


def cached_run(
    model: str,
    data: str,
    epochs: int,
    seed: int,
    cache: Path,
    size: int | None,
    threads: int,
    mode: str | None = None,
) -> dict:
    """`run_one`, unless its result is already in `cache`. The run folder (checkpoints, logs)
    is `cache/<label>_<seed>/`."""
    name = f"{label(model, mode)}_{seed}"

    def make() -> dict:
        torch.set_num_threads(threads)
        return run_one(model, data, epochs, seed, cache / name, size, mode)

    return cached(cache / f"{name}.json", make)


def baselines(data: str, size: int | None, cache: Path) -> tuple[dict, dict]:
    """(parameter metrics, audio distances) of every baseline, cached beside the runs."""
    cfg = compose_config("train", data_overrides(data, size))
    dm = build_datamodule(cfg.data, cfg.paths.data_dir)
    metrics = cached(cache / "baselines.json", lambda: datamodule_baselines(dm))
    sound = cached(cache / "baselines_sound.json", lambda: baseline_sound(dm))
    return metrics, sound


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


def sound_rows(results: dict[str, list[dict]], base_sound: dict):
    entries = [(name, [base_sound[name]]) for name in BASELINES]
    entries += [(model, [r["sound"] for r in runs]) for model, runs in results.items()]
    return sound_table(entries)


def beats(runs: list[float], reference: float, lower_is_better: bool = False) -> bool:
    """The runs' mean is better than `reference` by at least 3 standard errors (one run: no
    error estimate, never a claim)."""
    if len(runs) < 2:
        return False
    gap = statistics.fmean(runs) - reference
    if lower_is_better:
        gap = -gap
    return gap >= 3 * statistics.stdev(runs) / len(runs) ** 0.5


def findings(results: dict[str, list[dict]], base: dict, base_sound: dict, heads: list[str]):
    """The statements under the tables, each computed from them (see `beats`)."""
    score = metric_key("test", "score")
    mean = {m: statistics.fmean(r["metrics"][score] for r in runs) for m, runs in results.items()}
    lines = []
    best = max(mean, key=mean.get)
    ceiling = base["oracle_class"][score]
    lines.append(
        f"- Highest mean score: `{best}` ({mean[best]:.3f}), {mean[best] / ceiling:.1%} of the "
        f"grid ceiling (`oracle_class`, {ceiling:.3f}); "
        + (
            "models above the ceiling by 3 standard errors (their estimates leave the class "
            "grid): "
            + ", ".join(
                f"`{m}`"
                for m in results
                if beats([r["metrics"][score] for r in results[m]], ceiling)
            )
            if any(beats([r["metrics"][score] for r in results[m]], ceiling) for m in results)
            else "no model is above the ceiling by 3 standard errors"
        )
        + "."
    )
    params = {m: runs[0]["params"] for m, runs in results.items()}
    front = [
        m
        for m in sorted(results, key=params.get)
        if not any(params[o] < params[m] and mean[o] >= mean[m] for o in results)
    ]
    lines.append(
        "- Best score for its size (no smaller model scores higher), smallest first: "
        + ", ".join(f"`{m}` ({params[m]:,} parameters, {mean[m]:.3f})" for m in front)
        + "."
    )
    for ref in ("nn_pixels", "linear_probe"):
        won = [
            m
            for m, runs in results.items()
            if beats([r["metrics"][score] for r in runs], base[ref][score])
        ]
        every = [
            m
            for m, runs in results.items()
            if all(
                beats(
                    [r["metrics"][metric_key("test", "mae", h)] for r in runs],
                    base[ref][metric_key("test", "mae", h)],
                    lower_is_better=True,
                )
                for h in heads
            )
        ]
        lines.append(
            f"- Beat `{ref}` on score: {', '.join(f'`{m}`' for m in won) or 'none'}; on the "
            f"MAE of every head: {', '.join(f'`{m}`' for m in every) or 'none'}."
        )
    ref = "nn_pixels"
    for metric, name in (("mss", "MSS"), ("lsd_db", "LSD")):
        closest = {
            m: statistics.fmean(r["sound"][f"{metric}/median"] for r in runs)
            for m, runs in results.items()
        }
        top = min(closest, key=closest.get)
        lines.append(
            f"- Lowest mean {name} median of the models: `{top}` ({closest[top]:.3g}; "
            f"`{ref}` {base_sound[ref][f'{metric}/median']:.3g})."
        )
        both = [
            m
            for m, runs in results.items()
            if all(
                beats(
                    [r["sound"][f"{metric}/{s}"] for r in runs],
                    base_sound[ref][f"{metric}/{s}"],
                    lower_is_better=True,
                )
                for s in ("mean", "median")
            )
        ]
        lost = [m for m in results if m not in both]
        lines.append(
            f"- Closer to the target than `{ref}` by the sound ({name}, mean and median): "
            f"{', '.join(f'`{m}`' for m in both) or 'none'}; not: "
            f"{', '.join(f'`{m}`' for m in lost) or 'none'}."
        )
    return lines


def head_mode_choice(results: dict[str, list[dict]], heads: list[str]) -> list[str]:
    """Per head, the run label with the lowest mean validation MAE (last epoch): how a head
    mode is picked without looking at the test split."""
    lines = []
    for h in heads:
        val = {
            m: statistics.fmean(r["metrics"][metric_key("val", "mae", h)] for r in runs)
            for m, runs in results.items()
        }
        best = min(val, key=val.get)
        test = statistics.fmean(r["metrics"][metric_key("test", "mae", h)] for r in results[best])
        lines.append(
            f"- `{h}`: lowest validation MAE with `{best}` ({val[best]:.3g}; test {test:.3g})."
        )
    return lines


def command(args: argparse.Namespace) -> str:
    return (
        f"python scripts/compare_models.py --data {args.data} --epochs {args.epochs} "
        f"--seeds {args.seeds}"
        + (f" --size {args.size}" if args.size else "")
        + f" --models {' '.join(args.models)}"
        + (f" --head-modes {' '.join(args.head_modes)}" if args.head_modes else "")
        + (f" --markdown {args.markdown}" if args.markdown else "")
        + (f" --workers {args.workers}" if args.workers > 1 else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default="saw", help="data config (saw, moog_hard, fm, ...)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per model")
    ap.add_argument("--size", type=int, help="records of the dataset (default: the recipe's)")
    ap.add_argument("--models", nargs="+", default=ALL_MODELS)
    ap.add_argument(
        "--head-modes",
        nargs="+",
        help="train each model once per head mode (default: the model config's own)",
    )
    ap.add_argument("--markdown", help="update this dataset's section of this markdown file")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: small models on shared cores)"
    )
    ap.add_argument("--workers", type=int, default=1, help="runs trained at once (processes)")
    ap.add_argument(
        "--cache",
        type=Path,
        default=PROJECT_ROOT / "logs" / "compare_models",
        help="finished runs' results, per dataset, size and budget (an interrupted run resumes)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    Console().print(f"[dim]{command(args)}[/]")

    cache = args.cache / f"{args.data}_{args.size or 'recipe'}_{args.epochs}ep"
    cache.mkdir(parents=True, exist_ok=True)
    modes = args.head_modes or [None]
    jobs = [(m, mode, s) for m in args.models for mode in modes for s in range(args.seeds)]

    def job_args(job: tuple) -> tuple:
        model, mode, seed = job
        return model, args.data, args.epochs, seed, cache, args.size, args.threads, mode

    if args.workers > 1:
        # spawn: each run in a fresh process (Lightning and Hydra state are not fork-safe)
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = {job: pool.submit(cached_run, *job_args(job)) for job in jobs}
            done = {job: f.result() for job, f in futures.items()}
    else:
        done = {job: cached_run(*job_args(job)) for job in jobs}
    results = {
        label(m, mode): [done[m, mode, s] for s in range(args.seeds)]
        for m in args.models
        for mode in modes
    }
    base, base_sound = baselines(args.data, args.size, cache)
    heads = list(head_metrics(base["chance"], "test"))
    cols, rows = table(results, base, heads)
    scols, srows = sound_rows(results, base_sound)
    title = f"{args.data}: {args.epochs} epochs, {args.seeds} seeds (mean ± std)"
    for t, (c, r) in ((title, (cols, rows)), (f"{title}, by the sound", (scols, srows))):
        out = Table(title=t)
        for col in c:
            out.add_column(col, justify="right")
        for row in r:
            out.add_row(*row)
        Console().print(out)
    found = findings(results, base, base_sound, heads)
    if args.head_modes:
        found += ["", "Head mode picked per head on the validation split:", ""]
        found += head_mode_choice(results, heads)
    Console().print("\n".join(found))
    if args.markdown:
        kind = "head_modes" if args.head_modes else "compare_models"
        lines = [
            f"## Dataset `{args.data}`, {args.epochs} epochs, {args.seeds} seeds",
            "",
            f"`{command(args)}`",
            "",
            f"Machine: {machine_line()}.",
            "",
            *markdown_table(cols, rows),
            "",
            "By the sound: each test prediction rendered with the dataset's synth and the "
            "record's true nuisance (onset, attack, noise floor, detune, start phases), against "
            "the test note; mean and median over the test records (lower is better, but RMS cos: "
            "1 = the same envelope).",
            "",
            *markdown_table(scols, srows),
            "",
            "Computed from the tables above (a claim needs 3 standard errors over the seeds):",
            "",
            *found,
        ]
        update_section(args.markdown, f"{kind}_{args.data}", "\n".join(lines))


if __name__ == "__main__":
    main()
