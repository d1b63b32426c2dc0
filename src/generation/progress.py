"""Generation progress: a live rich display on a terminal, a log line every few percent otherwise.

A terminal gets one bar per split (records done of the split's share in this run, records/s,
time left). When stderr is not a terminal (a batch job, a pipe, a test) nothing is drawn and
the run's total is logged at every `log_every` percent instead, so job logs stay readable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


class RateColumn(ProgressColumn):
    """Records/s: rich's recent-window speed, else the average so far."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            speed = task.completed / task.elapsed
        return Text("- records/s" if speed is None else f"{speed:,.0f} records/s")


def format_seconds(s: float) -> str:
    s = round(s)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class GenerationProgress:
    """`with GenerationProgress({split: records to make}) as p: p.advance(split, n)`."""

    def __init__(
        self,
        totals: Mapping[str, int],
        *,
        log_every: float = 10.0,
        console: Console | None = None,
        verb: str = "generated",
    ) -> None:
        self.totals = {k: int(v) for k, v in totals.items() if v > 0}
        self.total = sum(self.totals.values())
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal and self.total > 0
        self.log_every = float(log_every)
        self.verb = verb  # what the log lines say was done to the records
        self.done = 0
        self._next_pct = self.log_every
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._started = time.perf_counter()

    def __enter__(self) -> GenerationProgress:
        self._started = time.perf_counter()
        if self.live:
            self._progress = Progress(
                TextColumn("{task.description:>5}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._tasks = {s: self._progress.add_task(s, total=n) for s, n in self.totals.items()}
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, split: str, n: int) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.advance(self._tasks[split], n)
            return
        if self.log_every <= 0 or not self.total:
            return
        pct = 100.0 * self.done / self.total
        if pct + 1e-9 < self._next_pct and self.done < self.total:
            return
        while self._next_pct <= pct + 1e-9:
            self._next_pct += self.log_every
        elapsed = time.perf_counter() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        log.info(
            f"{self.verb} {pct:3.0f}% ({self.done:,} of {self.total:,} records; "
            f"{rate:,.0f} records/s; {format_seconds(left)} left)"
        )
