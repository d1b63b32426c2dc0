"""Train the sequence experiments over several seeds on the default phrase dataset; tabulate
their test metrics beside the repeat-last-frame, mean-frame and linear autoregressive
baselines, and decide per model which baselines it beats.

    python scripts/sequence_results.py --seeds 3 [--experiments seq_lstm seq_gru:seq_gru_30k ...] \
        [--epochs N] [--markdown docs/sequence.md --figures docs/figures/sequence]

Each (experiment, seed) runs through `src/train.py`'s task function exactly as
`python src/train.py experiment=<name> seed=<seed>` would (its own epochs and settings unless
--epochs is given); `<name>:<model>` adds `model=<model>` (another size under the same
experiment), and `,key=value` parts add any other override (e.g. a training option:
`seq_lstm,model.scheduled_sampling.max_prob=0.5`). The best-validation checkpoint is
tested. Every run's metrics go to `<out>/<time>/results.json`, and the markdown section is
rewritten after each experiment's seeds finish (marked partial until all have), so a stopped
run keeps what it measured. Reported as mean ± std over seeds: one-step metrics (each horizon
frame from the true frames before it) and rollout metrics (primed with the context, the
horizon generated), on linear-scale mel power (docs/sequence.md defines them). The baselines
are computed once by `src/evaluation/sequence_baselines.py` on the same test windows (the
linear AR fitted on train, chosen on validation), saved as `<out>/<time>/baselines.json`; the
runs' own logged repeat-last and mean-frame figures are compared with them. A model "beats" a
baseline when its mean error is lower by at least 3 standard errors of its seed mean (the
baselines have no spread). The first run's horizon plot and an example figure are copied to
`--figures`.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import statistics
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from rich.console import Console
from rich.table import Table

from src.data.provision import build_datamodule
from src.evaluation.sequence_baselines import sequence_baselines
from src.metrics import metric_key
from src.metrics.spectral import ERRORS
from src.paths import CONFIG_DIR, PROJECT_ROOT
from src.train import train
from src.utils.config import compose_config

from mdreport import machine_line, markdown_table, spread, update_section

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("seq_*.yaml"))
QUIET = [
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "extras.print_config=false",
    "extras.enforce_tags=false",
]
# Column titles and number formats; linear MSE in units of 1e-7 (power re a full-scale sine).
COLUMNS = {
    "mse": ("MSE (1e-7)", ".3f", 1e7),
    "mse_db": ("MSE dB²", ".2f", 1.0),
    "centroid_err": ("centroid err Hz", ".1f", 1.0),
    "bandwidth_err": ("bandwidth err Hz", ".1f", 1.0),
    "flatness_err": ("flatness err", ".4f", 1.0),
    "entropy_err": ("entropy err", ".4f", 1.0),
}
BASELINES = ("repeat_last", "mean_frame", "linear_ar")
BASELINE_NAMES = {
    "repeat_last": "repeat-last",
    "mean_frame": "mean-frame",
    "linear_ar": "linear AR",
}
T_BEATS = 3.0  # standard errors of the model's seed mean a "beats" needs


def entry_overrides(entry: str) -> list[str]:
    """`experiment[:model][,key=value...]` -> the Hydra overrides of that entry."""
    head, *extra = entry.split(",")
    experiment, _, model = head.partition(":")
    return [f"experiment={experiment}", *([f"model={model}"] if model else []), *extra]


def run_one(entry: str, seed: int, epochs: int | None, out: Path, listen: int) -> dict:
    overrides = [
        *entry_overrides(entry),
        f"seed={seed}",
        f"callbacks.sequence_report.n_listen={listen}",
        *QUIET,
    ]
    if epochs is not None:
        overrides.append(f"trainer.max_epochs={epochs}")
    cfg = compose_config("train", overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    started = time.perf_counter()
    metrics, objects = train(cfg)
    speed = json.loads((out / "speed.json").read_text())
    return {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "model": cfg.hydra.runtime.choices["model"],
        "params": sum(p.numel() for p in objects["model"].parameters()),
        "epochs": len(speed["epochs"]),
        "seconds": time.perf_counter() - started,
        "windows_per_s": statistics.fmean(e["records_per_s"] for e in speed["epochs"]),
        "out": str(out),
    }


def rows_for(
    results: dict[str, list[dict]], baselines: dict, prefix: str
) -> tuple[list[str], list[list[str]]]:
    """One table (one step: prefix "", rollout: "rollout_"): the baselines (`baselines`
    metrics, one set), then each model; the one-step table adds the score (1 - MSE /
    repeat-last MSE; 0 for repeat-last)."""
    cols = ["predictor", "parameters", *(COLUMNS[e][0] for e in ERRORS)]
    if prefix == "":
        cols.append("score")

    def cells(runs: list[dict], who: str | None) -> list[str]:
        out = []
        for e in ERRORS:
            _, fmt, scale = COLUMNS[e]
            values = [r["metrics"][metric_key("test", prefix + e, who)] * scale for r in runs]
            out.append(spread(values, fmt))
        if prefix == "":
            repeat = baselines[metric_key("test", "mse", "repeat_last")]
            mse = [r["metrics"][metric_key("test", "mse", who)] for r in runs]
            out.append(spread([1 - m / repeat for m in mse], ".3f"))
        return out

    rows = [[BASELINE_NAMES[b], "0", *cells([{"metrics": baselines}], b)] for b in BASELINES]
    for name, runs in results.items():
        run_as = " ".join(entry_overrides(name))
        rows.append(
            [f"{runs[0]['model']} (`{run_as}`)", f"{runs[0]['params']:,}", *cells(runs, None)]
        )
    return cols, rows


def verdict(model_mse: list[float], baseline_mse: float) -> str:
    """Whether the model's MSE is below the baseline's by >= T_BEATS standard errors of its
    seed mean: "yes", "no (within noise)" or "no (worse)", with the gap in 1e-7 and its t."""
    mean = statistics.fmean(model_mse)
    gap = baseline_mse - mean
    if len(model_mse) < 2:
        return f"one run: {gap * 1e7:+.2f}"
    se = statistics.stdev(model_mse) / len(model_mse) ** 0.5
    t = gap / se if se > 0 else (float("inf") if gap > 0 else float("-inf") if gap < 0 else 0.0)
    word = "yes" if t >= T_BEATS else "no (worse)" if t <= -T_BEATS else "no (within noise)"
    return f"{word}: {gap * 1e7:+.2f}, t = {t:.1f}"


def claims_rows(results: dict[str, list[dict]], baselines: dict) -> tuple[list[str], list]:
    """Per model: does it beat each baseline on linear-power MSE, one step and rollout?"""
    checks = [("", b) for b in BASELINES if b != "mean_frame"] + [
        ("rollout_", b) for b in BASELINES
    ]
    cols = ["model"] + [
        f"{'rollout' if p else 'one step'} vs {BASELINE_NAMES[b]}" for p, b in checks
    ]
    rows = []
    for name, runs in results.items():
        row = [f"{runs[0]['model']} (`{' '.join(entry_overrides(name))}`)"]
        for p, b in checks:
            mse = [r["metrics"][metric_key("test", p + "mse")] for r in runs]
            row.append(verdict(mse, baselines[metric_key("test", p + "mse", b)]))
        rows.append(row)
    return cols, rows


def logged_difference(results: dict[str, list[dict]], baselines: dict) -> float:
    """The largest relative difference between the baselines computed here and those every
    run logged itself (repeat-last and mean-frame, every metric and mode)."""
    worst = 0.0
    for runs in results.values():
        for r in runs:
            for key, value in baselines.items():
                if key in r["metrics"] and value != 0:
                    worst = max(worst, abs(r["metrics"][key] - value) / abs(value))
    return worst


def compute_baselines(args: argparse.Namespace, root: Path) -> dict:
    """The baselines on the first experiment's data (every sequence experiment uses the
    default phrase dataset), saved beside results.json."""
    cfg = compose_config("train", entry_overrides(args.experiments[0]))
    dm = build_datamodule(cfg.data, cfg.paths.data_dir)
    started = time.perf_counter()
    out = sequence_baselines(dm)
    out["seconds"] = time.perf_counter() - started
    out["context"], out["horizon"] = dm.context, dm.horizon
    out["test_windows"] = len(dm.windows("test"))
    out["test_records"] = dm.splits["test"].n_records
    root.mkdir(parents=True, exist_ok=True)
    (root / "baselines.json").write_text(json.dumps(out, indent=1))
    return out


def command(args: argparse.Namespace) -> str:
    return (
        f"python scripts/sequence_results.py --seeds {args.seeds} "
        f"--experiments {' '.join(shlex.quote(e) for e in args.experiments)}"
        + (f" --epochs {args.epochs}" if args.epochs is not None else "")
        + (f" --markdown {args.markdown}" if args.markdown else "")
        + (f" --figures {args.figures}" if args.figures else "")
        + (f" --reuse {args.reuse}" if args.reuse else "")
    )


def show(title: str, cols: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*r)
    Console(width=200).print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--experiments", nargs="+", default=EXPERIMENTS)
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..N per experiment")
    ap.add_argument("--epochs", type=int, default=None, help="default: each experiment's own")
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "logs" / "sequence_results")
    ap.add_argument("--markdown", help="update the results section of this markdown file")
    ap.add_argument("--figures", type=Path, help="copy the first run's figures here")
    ap.add_argument(
        "--reuse",
        type=Path,
        help="results.json of an earlier run with the same settings: its finished experiments "
        "are taken from it, not run again (named on the page)",
    )
    args = ap.parse_args()
    args.reused = []
    Console().print(f"[dim]{command(args)}[/]")
    root = args.out / time.strftime("%Y-%m-%d_%H-%M-%S")

    earlier = json.loads(args.reuse.read_text()) if args.reuse else {}
    results: dict[str, list[dict]] = {}
    for i, exp in enumerate(args.experiments):
        if len(earlier.get(exp, [])) == args.seeds:
            results[exp] = earlier[exp]
            args.reused.append(exp)
        else:
            results[exp] = [
                run_one(
                    exp,
                    seed,
                    args.epochs,
                    root / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', exp)}_seed{seed}",
                    1 if i == 0 else 0,
                )
                for seed in range(1, args.seeds + 1)
            ]
        root.mkdir(parents=True, exist_ok=True)
        (root / "results.json").write_text(json.dumps(results, indent=1))
        if i == 0 and args.figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            report = Path(results[exp][0]["out"]) / "sequence"
            for name in ("horizon.png", "example_000.png"):
                shutil.copyfile(report / name, args.figures / name)
        report_tables(args, results, final=i == len(args.experiments) - 1, root=root)


def report_tables(
    args: argparse.Namespace, results: dict[str, list[dict]], final: bool, root: Path
) -> None:
    if getattr(args, "baselines", None) is None:
        args.baselines = compute_baselines(args, root)
    base = args.baselines
    tables = {
        "one step": rows_for(results, base["metrics"], ""),
        "rollout": rows_for(results, base["metrics"], "rollout_"),
        "claims": claims_rows(results, base["metrics"]),
    }
    if final:
        for title, (cols, rows) in tables.items():
            show(f"test, {title} ({args.seeds} seeds, mean ± std)", cols, rows)
    timing = [
        f"| {exp} | {runs[0]['epochs']} | {statistics.fmean(r['seconds'] for r in runs):.0f} | "
        f"{statistics.fmean(r['windows_per_s'] for r in runs):,.0f} |"
        for exp, runs in results.items()
    ]
    if not args.markdown:
        return
    partial = (
        []
        if final
        else [f"**Partial**: {len(results)} of {len(args.experiments)} experiments finished.", ""]
    )
    reused = (
        [
            f"Model runs taken from the earlier run {args.reuse} (same settings): "
            f"{', '.join(args.reused)}; the baselines were computed anew.",
            "",
        ]
        if args.reused
        else []
    )
    ar = base["linear_ar"]
    domain = "linear power" if ar["domain"] == "power" else "unit log-mel"
    lines = [
        f"`{command(args)}`",
        "",
        *partial,
        *reused,
        f"Machine: {machine_line()}.",
        "",
        f"Baselines (`src/evaluation/sequence_baselines.py`, {base['seconds']:.0f} s): "
        "repeat-last, the mean frame (the training frames' mean linear power per bin) and the "
        f"linear AR: least squares from the {base['context']} frames before a frame to it, "
        f"fitted in closed form on every position of the training phrases; chosen on the "
        f"validation windows' one-step MSE among {len(ar['validation_mse'])} candidates: "
        f"fitted on {domain}, ridge {ar['ridge']:g} (times the mean diagonal of the "
        "standardised Gram matrix). The runs' own logged repeat-last and mean-frame figures "
        f"differ from these by at most {logged_difference(results, base['metrics']):.1e} "
        "(relative).",
        "",
        f"Test: {base['test_windows']:,} windows of {base['context']} + {base['horizon']} "
        f"frames from the {base['test_records']:,} test phrases. One step (each of the "
        f"{base['horizon']} horizon frames of a test window predicted from the true frames "
        "before it):",
        "",
        *markdown_table(*tables["one step"]),
        "",
        f"Rollout (primed with the {base['context']} context frames, the {base['horizon']} "
        "horizon frames generated from the model's own output; errors averaged over the "
        "steps):",
        "",
        *markdown_table(*tables["rollout"]),
        "",
        f"Does each model beat each baseline on linear-power MSE? *yes* when its seed mean "
        f"is lower by at least {T_BEATS:g} standard errors of that mean (the baselines have "
        "no spread); each cell gives the baseline's MSE minus the model's (1e-7) and t, that "
        "gap in standard errors:",
        "",
        *markdown_table(*tables["claims"]),
        "",
        "Time per run (training and test on the machine above, one torch thread):",
        "",
        "| experiment | epochs | seconds | train windows/s |",
        "|---|---:|---:|---:|",
        *timing,
    ]
    update_section(args.markdown, "sequence_results", "\n".join(lines))


if __name__ == "__main__":
    main()
