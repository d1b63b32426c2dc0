"""Collect a sweep into one table and one figure: a Hydra multirun folder or an Optuna study.

    python scripts/collect_runs.py logs/train/multiruns/<time>     # python src/train.py -m ...
    python scripts/collect_runs.py logs/search/<study name>        # python src/search.py ...
    python scripts/collect_runs.py --storage sqlite:///x.db --study NAME --out results/x

Writes `<out>.csv` (one row per job or trial: its state, the swept values, every final
metric) and `<out>.png` (the metric against each swept parameter, the best run starred);
`<out>` defaults to `<folder>/runs`. A multirun job's values come from its
`.hydra/overrides.yaml` (the keys whose values differ between jobs are the swept ones) and its
metrics from the `metrics.json` the train task writes; a study's from its trials (parameters,
state, and the metrics each trial recorded).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table


def _number(text: str):
    """An override value as a float when it is one, else the text."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def read_multirun(folder: Path) -> tuple[list[dict], list[str], str | None]:
    """(rows, swept keys, optimized metric) of a Hydra multirun folder."""
    jobs = sorted(
        (p for p in folder.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()),
        key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else p.name),
    )
    if not jobs:
        raise SystemExit(f"{folder}: no job folders with .hydra/overrides.yaml")
    rows, metric = [], None
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        values = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text()) or {}
        metric = metric or config.get("optimized_metric")
        path = job / "metrics.json"
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        rows.append(
            {
                "job": job.name,
                "state": "complete" if metrics else "failed",
                "values": values,
                "overrides": {k: _number(v) for k, v in values.items()},  # every one, swept or not
                "metrics": metrics,
                "output_dir": str(job),
            }
        )
    keys = list(dict.fromkeys(k for r in rows for k in r["values"]))
    swept = [k for k in keys if len({r["values"].get(k) for r in rows}) > 1] or keys[:1]
    for r in rows:
        r["values"] = {k: _number(r["values"].get(k)) for k in swept}
    return rows, swept, metric


def read_study(storage: str, study_name: str | None) -> tuple[list[dict], list[str], str | None]:
    """(rows, parameter names, optimized metric) of an Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if study_name is None:
        names = optuna.get_all_study_names(storage)
        if len(names) != 1:
            raise SystemExit(f"{storage} holds studies {names}: name one with --study")
        study_name = names[0]
    study = optuna.load_study(study_name=study_name, storage=storage)
    problem = study.user_attrs.get("problem", {})
    names = list(problem.get("params", {})) or list(
        dict.fromkeys(k for t in study.trials for k in t.params)
    )
    rows = []
    for t in study.trials:
        metrics = dict(t.user_attrs.get("metrics", {}))
        rows.append(
            {
                "job": str(t.number),
                "state": t.state.name.lower(),
                "values": {k: t.params.get(k) for k in names},
                "metrics": metrics,
                "output_dir": t.user_attrs.get("output_dir", ""),
                "error": t.user_attrs.get("error", ""),
            }
        )
    return rows, names, problem.get("optimized_metric")


def write_csv(rows: list[dict], swept: list[str], metric: str | None, path: Path) -> None:
    names = sorted({k for r in rows for k in r["metrics"]})
    if metric in names:  # the optimized metric first
        names.remove(metric)
        names.insert(0, metric)
    extra = ["error"] if any(r.get("error") for r in rows) else []
    header = ["job", "state", *swept, *names, "output_dir", *extra]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            cells = [r["job"], r["state"], *(r["values"].get(k) for k in swept)]
            cells += [r["metrics"].get(k, "") for k in names]
            cells += [r["output_dir"], *(r.get("error", "") for _ in extra)]
            w.writerow(["" if c is None else c for c in cells])
    os.replace(tmp, path)


def best_row(rows: list[dict], metric: str, maximize: bool) -> dict | None:
    scored = [r for r in rows if math.isfinite(r["metrics"].get(metric, math.nan))]
    if not scored:
        return None
    return (max if maximize else min)(scored, key=lambda r: r["metrics"][metric])


def plot(rows: list[dict], swept: list[str], metric: str, best: dict | None, path: Path) -> None:
    """The metric against each swept parameter (log axis for positive ranges over 20x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in rows if math.isfinite(r["metrics"].get(metric, math.nan))]
    cols = min(4, len(swept))
    rows_ = math.ceil(len(swept) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.6 * cols, 3.2 * rows_), squeeze=False)
    for ax in axes.flat[len(swept) :]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, swept):
        xs = [r["values"].get(key) for r in scored]
        ys = [r["metrics"][metric] for r in scored]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        if numeric:
            positions = xs
            if xs and min(xs) > 0 and max(xs) / min(xs) >= 20:
                ax.set_xscale("log")
        else:
            labels = sorted({str(x) for x in xs})
            positions = [labels.index(str(x)) for x in xs]
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.scatter(positions, ys, s=18, alpha=0.75)
        if best is not None and best in scored:
            i = scored.index(best)
            ax.scatter([positions[i]], [ys[i]], marker="*", s=140, color="tab:red", zorder=3)
        ax.set_xlabel(key, fontsize=9)
        ax.set_ylabel(metric, fontsize=9)
        ax.grid(alpha=0.3)
    failed = len(rows) - len(scored)
    fig.suptitle(f"{len(scored)} runs" + (f", {failed} without {metric}" if failed else ""))
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folder", nargs="?", type=Path, help="multirun folder or search folder")
    ap.add_argument("--storage", help="an Optuna storage URL (instead of <folder>/study.db)")
    ap.add_argument("--study", help="the study name, if the storage holds several")
    ap.add_argument("--metric", help="the metric to plot (default: the optimized metric)")
    ap.add_argument("--minimize", action="store_true", help="lower is better (default: higher)")
    ap.add_argument("--out", type=Path, help="output path without suffix (default <folder>/runs)")
    args = ap.parse_args(argv)
    if args.folder is None and args.storage is None:
        ap.error("give a folder or --storage")
    if args.storage or (args.folder / "study.db").is_file():
        storage = args.storage or f"sqlite:///{(args.folder / 'study.db').resolve()}"
        rows, swept, metric = read_study(storage, args.study)
    elif args.folder.is_dir():
        rows, swept, metric = read_multirun(args.folder)
    else:
        raise SystemExit(f"{args.folder}: not a folder")
    metric = args.metric or metric or "val/score"
    out = args.out or args.folder / "runs"
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out.with_suffix(".csv"), out.with_suffix(".png")
    write_csv(rows, swept, metric, csv_path)
    best = best_row(rows, metric, maximize=not args.minimize)
    plot(rows, swept, metric, best, png_path)

    table = Table(title=f"{len(rows)} runs, by {metric}")
    for col in ("job", "state", *swept, metric):
        table.add_column(col)

    def rank(r: dict) -> float:
        v = r["metrics"].get(metric, math.nan)
        return v if math.isfinite(v) else (math.inf if args.minimize else -math.inf)

    ranked = sorted(rows, key=rank, reverse=not args.minimize)
    for r in ranked[:10]:
        value = r["metrics"].get(metric)
        table.add_row(
            r["job"],
            r["state"],
            *(f"{r['values'].get(k)}" for k in swept),
            "" if value is None else f"{value:.4f}",
        )
    console = Console()
    console.print(table)
    console.print(f"Wrote {csv_path} and {png_path}")
    return {"rows": rows, "swept": swept, "metric": metric, "best": best}


if __name__ == "__main__":
    main(sys.argv[1:])
