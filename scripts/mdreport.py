"""Keep benchmark tables in docs/performance.md up to date, one marked section per script."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from src.metrics import metric_key
from src.utils.machine import machine_line

__all__ = ["machine_line", "markdown_table", "results_table", "spread", "update_section"]


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


def markdown_table(cols: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(cols) + " |",
        "|---|" + "---:|" * (len(cols) - 1),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
