"""Datasets at scale: generation of large default datasets, and training on more than fits.

    python scripts/bench_scale.py [--sizes 100000 1000000] [--markdown docs/performance.md]

1. Generation of the default recipe (saw, `mel`, 32x32x1, 1 s notes at 8 kHz) at each size, each
   in a fresh process: wall time of `generate_dataset` (rendering, writing the parts,
   assembling), records/s, and peak resident memory (ru_maxrss) of the main process and of the
   largest worker.
2. Records/s against the number of worker processes at the smallest size.
3. Training on a dataset larger than the memory budget: the smallest dataset with
   `data.max_memory_gb` below its size, so `in_memory: auto` streams it. Loader-only epochs
   (in memory; streaming in a uniform or the block order; with the page cache warm, and dropped
   before every epoch), then cnn_12k training steps fed by the in-memory and the streaming
   loader in alternation.

Everything is written under a temporary folder, deleted at the end (1M records take about
1 GB, twice that while the parts are assembled).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from src.paths import PROJECT_ROOT

from mdreport import machine_line, target_status, update_section

SCRIPT = Path(__file__).resolve()


# --- 1, 2: generation, each in its own process ------------------------------------------------
def child_generate(size: int, workers: int, threads: int | None, out: Path) -> None:
    """(In a fresh process) generate, then print wall seconds and peak RSS as JSON."""
    from src.generate import generate_dataset
    from src.utils.config import compose_config

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    overrides = [
        f"dataset.size={size}",
        f"dataset.workers={workers}",
        f"dataset.out_dir={out}",
        "dataset.name=bench",
        "dataset.log_every=10",
    ]
    if threads:
        overrides.append(f"dataset.threads={threads}")
    cfg = compose_config("generate", overrides)
    t = time.perf_counter()
    generate_dataset(cfg)
    wall = time.perf_counter() - t
    kib = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    print(
        json.dumps(
            {
                "wall": wall,
                "rss_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib,
                "rss_worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib,
            }
        )
    )


def generate(size: int, workers: int, threads: int | None, out: Path) -> dict:
    shutil.rmtree(out / "bench", ignore_errors=True)
    cmd = [sys.executable, str(SCRIPT), "--child", str(size), str(workers), str(threads or 0)]
    done = subprocess.run(
        [*cmd, str(out)], check=True, capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    got.update(size=size, workers=workers, threads=threads, rate=size / got["wall"])
    got["steady"] = steady_rate(done.stderr)
    return got


PROGRESS = re.compile(r"generated\s+\d+% \(([\d,]+) of [\d,]+ records; ([\d,]+) records/s")


def steady_rate(log: str) -> float:
    """Records/s between the first and the last progress line: the rate once every process
    has started (each progress line gives records done and the average rate so far)."""
    points = [(int(d.replace(",", "")), int(r.replace(",", ""))) for d, r in PROGRESS.findall(log)]
    (d0, r0), (d1, r1) = points[0], points[-1]
    return (d1 - d0) / (d1 / r1 - d0 / r0)


# --- 3: training on more than the memory budget ---------------------------------------------------
def resident_bytes(path: Path) -> int | None:
    """Bytes of `path` in the page cache (util-linux fincore), None where it is unavailable."""
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return int(out.split()[0])
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def drop_cache(path: Path) -> None:
    """Evict a file's clean pages from the page cache (Linux; nothing may map it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def loader_epochs(folder: Path, batch: int, epochs: int) -> list[tuple[str, str, float, str]]:
    """Records/s of whole epochs over the train split: in memory, and streamed in each order
    with the page cache warm or dropped. Every epoch builds its loader afresh, so nothing from
    an earlier epoch stays mapped."""
    import torch

    from src.data.batching import EpochBatches, MemmapBatches, VIMHLoader
    from src.data.vimh import VIMHDataset

    split = VIMHDataset(folder)["train"]
    path, n, codes, source = split.path, len(split), split.codes.copy(), split.pixel_source()
    nbytes = int(np.prod(split.images.shape[1:]))
    inputs = torch.from_numpy(np.array(split.images))
    del split
    gc.collect()
    window = MemmapBatches.group_records(batch, nbytes)
    rows = []

    def run(path_name: str, order: str, cold: bool) -> None:
        rates, resident = [], []
        for epoch in range(epochs):
            batches = EpochBatches(
                n, batch, shuffle=True, seed=0, window=window if order == "block" else None
            )
            batches.set_epoch(epoch)
            if path_name == "in memory":
                loader = VIMHLoader(batches, inputs=inputs, codes=torch.from_numpy(codes))
            else:
                stream = MemmapBatches(source, nbytes, codes, None, n, batch, len(batches))
                loader = VIMHLoader(batches, stream=stream)
            if cold:
                drop_cache(path)
                resident.append(resident_bytes(path))
            t = time.perf_counter()
            seen = sum(len(x) for x, _ in loader)
            rates.append(seen / (time.perf_counter() - t))
            del loader
            gc.collect()
        cache = "warm"
        if cold:
            known = [r for r in resident if r is not None]
            cache = "dropped" + (f" ({max(known)} B left)" if known else " (unverified)")
        rows.append((path_name, order, float(np.median(rates)), cache))

    run("in memory", "uniform", cold=False)
    for cold in (False, True):
        for order in ("uniform", "block"):
            run("streaming", order, cold)
    return rows


def train_rates(
    folder: Path, memory_gb: float, batch: int, rounds: int, steps: int
) -> dict[str, float]:
    """Training records/s of cnn_12k (forward, backward, AdamW) on batches from the
    datamodule's in-memory and streaming loaders, alternating `steps` batches of each for
    `rounds` rounds after one untimed round, so that a busy spell on a shared machine slows
    both alike."""
    import torch
    from hydra.utils import instantiate

    from src.data.datamodule import VIMHDataModule
    from src.utils.config import compose_config

    dms = {
        "in memory": VIMHDataModule(folder, batch_size=batch, in_memory=True),
        "streaming": VIMHDataModule(folder, batch_size=batch, max_memory_gb=memory_gb),
    }
    for dm in dms.values():
        dm.setup()
    if dms["streaming"].use_memory:
        raise RuntimeError(f"{folder} fits in max_memory_gb={memory_gb}: nothing to stream")
    cfg = compose_config("train", ["model=cnn_12k", "data=vimh", f"data.data_dir={folder}"])
    model = instantiate(cfg.model, **dms["in memory"].spec.model_kwargs())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def batches(dm):
        loader, epoch = dm.train_dataloader(), 0
        while True:
            loader.sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    streams = {k: batches(dm) for k, dm in dms.items()}
    seconds, records = dict.fromkeys(dms, 0.0), dict.fromkeys(dms, 0)
    for r in range(rounds + 1):  # round 0 warms up, untimed
        for name, dm in dms.items():
            t, seen = time.perf_counter(), 0
            for _ in range(steps):
                x, y = dm.on_after_batch_transfer(next(streams[name]))
                loss, _ = model.compute_loss(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                seen += len(x)
            if r:
                seconds[name] += time.perf_counter() - t
                records[name] += seen
    return {k: records[k] / seconds[k] for k in dms}


def torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


# --- report ------------------------------------------------------------------------------------
def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--workers", type=int, default=1, help="workers for the size runs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--repeats", type=int, default=2, help="runs per worker count (best kept)")
    ap.add_argument("--memory-gb", type=float, default=0.05, help="data.max_memory_gb (part 3)")
    ap.add_argument("--rounds", type=int, default=10, help="training rounds (part 3)")
    ap.add_argument("--steps", type=int, default=30, help="batches per path and round")
    ap.add_argument("--markdown", help="update the scale section of this markdown file")
    args = ap.parse_args()

    console = Console()
    with tempfile.TemporaryDirectory(prefix="bench_scale-") as tmp:
        tmp = Path(tmp)
        small = min(args.sizes)
        load = [os.getloadavg()[0]]
        sizes = [generate(n, args.workers, args.threads, tmp / f"n{n}") for n in args.sizes]
        scaling = []
        for _ in range(args.repeats):  # interleaved, so a busy spell hits both counts alike
            for w in (1, 2):
                scaling.append(generate(small, w, args.threads, tmp / "workers"))
        best = {
            w: max((r for r in scaling if r["workers"] == w), key=lambda r: r["rate"])
            for w in (1, 2)
        }
        folder = tmp / f"n{small}" / "bench"
        load.append(os.getloadavg()[0])
        loading = loader_epochs(folder, 128, epochs=3)
        load.append(os.getloadavg()[0])
        torch_threads(args.threads)
        training = train_rates(folder, args.memory_gb, 128, args.rounds, args.steps)
        load.append(os.getloadavg()[0])
        inputs_mb = (folder / "train").stat().st_size / 2**20

    t1 = Table(title="Generation of the default recipe")
    for col in ("records", "workers", "wall s", "records/s", "peak RSS main", "peak RSS worker"):
        t1.add_column(col, justify="right")
    for r in sizes:
        t1.add_row(
            f"{r['size']:,}",
            str(r["workers"]),
            f"{r['wall']:.1f}",
            f"{r['rate']:,.0f}",
            mib(r["rss_main"]),
            mib(r["rss_worker"]) if r["workers"] > 1 else "-",
        )
    console.print(t1)
    ratio = sizes[-1]["rss_main"] / sizes[0]["rss_main"]
    console.print(f"peak RSS {sizes[-1]['size']:,} / {sizes[0]['size']:,} records: {ratio:.2f}")
    console.print(
        f"workers 1 -> 2 at {small:,} records: {best[1]['rate']:,.0f} -> {best[2]['rate']:,.0f} "
        f"records/s ({best[2]['rate'] / best[1]['rate']:.2f}x); once started "
        f"{best[1]['steady']:,.0f} -> {best[2]['steady']:,.0f}"
    )
    for row in loading:
        console.print(f"loader {row[0]}, {row[1]} order, cache {row[3]}: {row[2]:,.0f} records/s")
    for name, rate in training.items():
        console.print(f"training cnn_12k, {name}: {rate:,.0f} records/s")
    console.print(f"load average (1 min) during the run: {min(load):.1f} to {max(load):.1f}")

    if not args.markdown:
        return
    mem, stream = training["in memory"], training["streaming"]
    in_mem_loader = loading[0][2]
    lines = [
        "## Datasets at scale",
        "",
        "`python scripts/bench_scale.py --markdown docs/performance.md`: the default recipe (saw, "
        "`mel`, 32x32x1, 1 s notes at 8 kHz, batch 2048) generated at each size in a fresh "
        "process; wall time of `generate_dataset` (rendering into parts, identifiability, "
        "assembling), peak resident memory (`ru_maxrss`) of the main process and of the largest "
        f"worker; torch threads per process: {args.threads}.",
        "",
        f"Machine: {machine_line()}. Other jobs shared the cores during the run (1-minute load "
        f"average {min(load):.1f} to {max(load):.1f} on {os.cpu_count()} cores), so absolute "
        "rates vary between runs; compare the ratios inside each table.",
        "",
        "| records | workers | wall | records/s | peak RSS (main) | peak RSS (worker) |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['size']:,} | {r['workers']} | {r['wall']:.1f} s | {r['rate']:,.0f} | "
            f"{mib(r['rss_main'])} | {mib(r['rss_worker']) if r['workers'] > 1 else '-'} |"
            for r in sizes
        ),
        "",
        f"Peak memory, {sizes[-1]['size']:,} against {sizes[0]['size']:,} records: "
        f"**{ratio:.2f}x** (target <= 1.2x: {target_status(ratio, 1.2, at_least=False)}; "
        "nothing but the label codes grows with the dataset).",
        "",
        f"Workers at {small:,} records (best of {args.repeats}, interleaved; "
        f"{args.threads} torch thread(s) per worker):",
        "",
        "| workers | wall | records/s | vs 1 worker | records/s once started | vs 1 worker |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {w} | {best[w]['wall']:.1f} s | {best[w]['rate']:,.0f} | "
            f"{best[w]['rate'] / best[1]['rate']:.2f}x | {best[w]['steady']:,.0f} | "
            f"{best[w]['steady'] / best[1]['steady']:.2f}x |"
            for w in (1, 2)
        ),
        "",
        "*Once started*: records/s between the first and the last progress line, leaving out "
        "the start (a spawned worker imports torch before its first batch)."
        + (
            " The load average stayed above the core count throughout: other jobs kept the "
            "cores busy, so a second worker found no idle core to run on."
            if min(load) > (os.cpu_count() or 1)
            else ""
        ),
        "",
        f"Training on more than the memory budget: the {small:,}-record dataset "
        f"({inputs_mb:,.0f} MiB of train records) with `data.max_memory_gb={args.memory_gb}`, so "
        "`in_memory: auto` streams it in the block order. Loader alone (batch 128, 0 workers, "
        "median of 3 epochs, no model); *dropped*: the file's pages are evicted from the page "
        "cache before every epoch, as for a dataset larger than RAM (the bytes left cached are "
        "measured with `fincore`):",
        "",
        "| path | order | page cache | records/s | vs in memory |",
        "|---|---|---|---:|---:|",
        *(f"| {p} | {o} | {c} | {r:,.0f} | {r / in_mem_loader:.2f}x |" for p, o, r, c in loading),
        "",
        f"Training cnn_12k (forward, backward, AdamW; {args.threads} torch thread(s)) on batches "
        "from the datamodule's two loaders, normalised as in training, alternating "
        f"{args.steps} batches of each for {args.rounds} rounds:",
        "",
        "| data | records/s | vs in memory |",
        "|---|---:|---:|",
        f"| in memory (`data.in_memory=true`) | {mem:,.0f} | 1.00x |",
        f"| streaming, block order (`data.max_memory_gb={args.memory_gb}`) | {stream:,.0f} | "
        f"{stream / mem:.2f}x |",
    ]
    update_section(args.markdown, "bench_scale", "\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        size, workers, threads, out = sys.argv[2:6]
        child_generate(int(size), int(workers), int(threads) or None, Path(out))
    else:
        main()
