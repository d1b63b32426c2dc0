"""Keep benchmark tables in docs/performance.md up to date, one marked section per script."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from src.metrics import metric_key
from src.utils.machine import machine_line

__all__ = [
    "load_note",
    "machine_line",
    "markdown_table",
    "results_table",
    "sound_table",
    "spread",
    "target_status",
    "update_section",
]

# How sound-distance columns are headed (src/metrics/audio.py SOUND_METRICS), and formatted.
SOUND_COLUMNS = {
    "mss": ("MSS", ".3f"),
    "lsd_db": ("LSD dB", ".2f"),
    "sc": ("SC", ".3f"),
    "mfcc_dtw": ("MFCC-DTW", ".3g"),
    "f0_err_cents": ("f0 err cents", ".3g"),
    "rms_cos": ("RMS cos", ".4f"),
}


def update_section(path: str | Path, name: str, body: str) -> None:
    """Replace the `name` section of a markdown file (or append it), writing atomically."""
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Performance\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def target_status(value: float, target: float, at_least: bool = True) -> str:
    """ "met" or "missed": whether a measured figure reaches its target (a floor, or a ceiling
    with at_least=False)."""
    return "met" if (value >= target if at_least else value <= target) else "missed"


def load_note() -> str:
    """A sentence for figures taken while other work kept the cores busy (1-min load average
    at least half the core count), else an empty string: such figures are floors, and a
    target missed under load is not shown missed on a quiet machine."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return ""
    cores = os.cpu_count() or 1
    if load < 0.5 * cores:
        return ""
    return (
        f"Measured under load: other jobs kept the cores busy (1-min load average {load:.1f} on "
        f"{cores} cores), so these rates are lower than a quiet machine's; a target marked "
        "missed here still needs a run on a quiet machine to be settled."
    )


def spread(values: list[float], fmt: str) -> str:
    """mean ± std (sample std over runs), or the value alone for one run."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(statistics.stdev(values), fmt)}"


def results_table(
    heads: list[str], entries: list[tuple[str, list[dict], dict[str, str]]], stage: str = "test"
) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of a results table: one row per predictor (a baseline or a model),
    its score and each head's accuracy and MAE, as mean ± std over its runs (metric dicts).
    `entries` = [(name, runs, extra cells by column name)]; extra columns come after the name."""
    extra = [c for _, _, cells in entries for c in cells]
    extra = list(dict.fromkeys(extra))
    cols = ["predictor", *extra, "score", *(f"{h} {k}" for h in heads for k in ("acc", "MAE"))]
    rows = []
    for name, runs, cells in entries:
        row = [name, *(cells.get(c, "-") for c in extra)]
        row.append(spread([r[metric_key(stage, "score")] for r in runs], ".3f"))
        for h in heads:
            row.append(spread([r[metric_key(stage, "acc", h)] for r in runs], ".3f"))
            row.append(spread([r[metric_key(stage, "mae", h)] for r in runs], ".3g"))
        rows.append(row)
    return cols, rows


def sound_table(
    entries: list[tuple[str, list[dict]]], stats: tuple[str, ...] = ("mean", "median")
) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of an audio-distance table: per predictor, each sound metric's mean
    and median over the test records, as mean ± std over its runs (`src/evaluation/sound.py`
    dicts). A predictor without sound results gets dashes."""
    cols = ["predictor"]
    for label, _ in SOUND_COLUMNS.values():
        cols += [f"{label} {s}" for s in stats]
    rows = []
    for name, runs in entries:
        row = [name]
        for metric, (_, fmt) in SOUND_COLUMNS.items():
            for s in stats:
                key = f"{metric}/{s}"
                values = [r[key] for r in runs if r and key in r]
                row.append(spread(values, fmt) if values else "-")
        rows.append(row)
    return cols, rows


def markdown_table(cols: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(cols) + " |",
        "|---|" + "---:|" * (len(cols) - 1),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
