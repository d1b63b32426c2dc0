"""Measure VIMHDataModule loading speed (records/s for one training epoch).

Generates the default saw recipe (32x32x1) at the requested size into a temporary folder, then
times full epochs of the
fast (in-memory) path and the streaming path (0 and 2 workers), each batch passed through
`on_after_batch_transfer` on the CPU as training would. For reference it also times the
per-record `Dataset.__getitem__` + default collate loader the old template used.

    .venv/bin/python scripts/bench_loading.py [--records 50000] [--markdown docs/performance.md]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from src.data.datamodule import VIMHDataModule
from src.data.vimh import VIMHDataset
from src.generate import generate_dataset
from src.utils.config import compose_config

from mdreport import load_note, machine_line, target_status, update_section

FAST_PATH_TARGET = 200_000  # records/s of the in-memory fast path (the project's target)


class PerRecord(Dataset):
    """The old template's way: one record per `__getitem__`, collated in Python."""

    def __init__(self, folder: Path) -> None:
        split = VIMHDataset(folder)["train"]
        self.images, self.codes = split.images, split.codes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return torch.from_numpy(np.array(self.images[i])), torch.from_numpy(
            self.codes[i].astype(np.int64)
        )


class InMemoryBatches(Dataset):
    """The fast path's gather behind a `DataLoader(batch_size=None)`, for comparison."""

    def __init__(self, images: torch.Tensor, codes: torch.Tensor) -> None:
        self.shape = images.shape[1:]
        self.flat = images.numpy().reshape(len(images), -1)
        self.codes = codes.numpy()

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, idx: torch.Tensor):
        i = idx.numpy()
        x = np.take(self.flat, i, axis=0).reshape(len(i), *self.shape)
        return torch.from_numpy(x), torch.from_numpy(np.take(self.codes, i, axis=0))


def time_epochs(loader, transform, epochs: int) -> tuple[float, float, int]:
    """Median and best records/s over `epochs` full passes (epoch e uses shuffle epoch e)."""
    rates, n = [], 0
    for epoch in range(epochs):
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        n = 0
        t0 = time.perf_counter()
        for batch in loader:
            x, _ = transform(batch)
            n += len(x)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates)), max(rates), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000, help="train records")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3, help="epochs timed per row (best kept)")
    ap.add_argument("--markdown", type=Path, help="also write the table here as markdown")
    ap.add_argument("--skip-baseline", action="store_true", help="skip the per-record loader")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # train is 80% of the records (configs/generate.yaml splits)
        cfg = compose_config(
            "generate",
            [
                f"dataset.size={round(args.records / 0.8)}",
                f"dataset.out_dir={tmp}",
                "identifiability.enabled=false",
            ],
        )
        folder = generate_dataset(cfg)
        Console(stderr=True).print(
            f"wrote {folder.name} in {time.perf_counter() - t0:.1f} s", style="dim"
        )
        configs = [
            ("fast path (in memory)", dict(in_memory=True)),
            ("streaming, 0 workers", dict(in_memory=False, num_workers=0)),
            ("streaming, 2 workers", dict(in_memory=False, num_workers=2)),
        ]
        for label, kwargs in configs:
            t0 = time.perf_counter()
            dm = VIMHDataModule(folder, batch_size=args.batch_size, **kwargs)
            dm.setup("fit")
            loader = dm.train_dataloader()
            next(iter(loader))  # loads the split into memory / starts workers
            ready = time.perf_counter() - t0
            rows.append(
                (label, *time_epochs(loader, dm.on_after_batch_transfer, args.epochs), ready)
            )
            if kwargs["in_memory"] is True:
                t0 = time.perf_counter()
                dl = DataLoader(
                    InMemoryBatches(loader.inputs, loader.codes),
                    batch_size=None,
                    sampler=loader.sampler,
                )
                ready = time.perf_counter() - t0
                rate = time_epochs(dl, dm.on_after_batch_transfer, args.epochs)
                rows.append(("  same, as DataLoader(batch_size=None)", *rate, ready))
        if not args.skip_baseline:
            dm = VIMHDataModule(folder, batch_size=args.batch_size, in_memory=True)
            dm.setup("fit")
            t0 = time.perf_counter()
            old = DataLoader(PerRecord(folder), batch_size=args.batch_size, shuffle=True)
            ready = time.perf_counter() - t0
            rate = time_epochs(old, dm.on_after_batch_transfer, min(2, args.epochs))
            rows.append(("per-record __getitem__ + default collate", *rate, ready))

    title = (
        f"VIMH loading, 32x32x1, batch {args.batch_size}, {args.records} train records, "
        f"{torch.get_num_threads()} torch threads, {platform.machine()}"
    )
    table = Table(title=title)
    cols = ("loader", "median rec/s", "best rec/s", "rec/epoch", "setup s")
    for col in cols:
        table.add_column(col, justify="left" if col == "loader" else "right")
    for label, med, best, n, ready in rows:
        table.add_row(label, f"{med:,.0f}", f"{best:,.0f}", f"{n:,}", f"{ready:.2f}")
    Console(width=110).print(table)
    if args.markdown:
        lines = [
            "## Loading",
            "",
            "`python scripts/bench_loading.py --markdown docs/performance.md`: records/s for one "
            "training epoch through VIMHDataModule, batch transfer and normalisation included.",
            "",
            f"Machine: {machine_line()}.",
            "",
            f"**{title}** ({args.epochs} epochs each; includes normalisation on the CPU)",
            "",
            "| " + " | ".join(cols) + " |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {a.strip()} | {m:,.0f} | {b:,.0f} | {n:,} | {r:.2f} |" for a, m, b, n, r in rows
        ]
        fast = rows[0][1]
        lines += [
            "",
            f"Target: the fast path >= {FAST_PATH_TARGET:,} records/s (median): "
            f"{target_status(fast, FAST_PATH_TARGET)} ({fast:,.0f}).",
        ]
        note = load_note()
        if note:
            lines += ["", note]
        update_section(args.markdown, "bench_loading", "\n".join(lines))


if __name__ == "__main__":
    main()
