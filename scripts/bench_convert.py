"""Conversion throughput (files/s for the whole pipeline: list, read, resample, cut, image, write).

Writes a collection of 1 s recordings in class folders (most at 16 kHz, a quarter at 44.1 kHz
so resampling is part of the cost), then converts it as a Speech Commands copy would be
(`spectrogram=kws_mel40`, 16 kHz, 1 s) with 1 and 2 worker processes, and with waveforms;
each setting `--repeats` times, interleaved, the best run counting (the machine may be shared).

python scripts/bench_convert.py [--files N] [--repeats K] [--markdown docs/own_data.md]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from src.audio.io import write_wav
from src.convert import convert_dataset
from src.utils.config import compose_config

from mdreport import machine_line, update_section

SPEECH_COMMANDS_FILES = 105_829  # v0.02, all 35 words


def write_collection(root: Path, files: int, classes: int = 10, seed: int = 0) -> None:
    """`files` 1 s clips (decaying tones in noise) in `classes` folders; every 4th at 44.1 kHz."""
    rng = np.random.default_rng(seed)
    for i in range(files):
        rate = 44100 if i % 4 == 3 else 16000
        t = np.arange(rate) / rate
        f0 = 200 + 100 * (i % classes) + rng.uniform(0, 50)
        x = np.sin(2 * np.pi * f0 * t) * np.exp(-3 * t) * 0.3 + rng.normal(0, 0.01, rate)
        write_wav(root / f"class{i % classes:02d}" / f"{i:06d}_nohash_0.wav", x, rate)


def run(root: Path, out: Path, workers: int, store_audio: bool) -> float:
    cfg = compose_config(
        "convert",
        [
            "source=speech_commands",
            f"source.path={root}",
            "spectrogram=kws_mel40",
            f"dataset.workers={workers}",
            f"dataset.store_audio={str(store_audio).lower()}",
            f"dataset.out_dir={out}",
            f"dataset.name=w{workers}_a{int(store_audio)}",
            "dataset.log_every=0",
        ],
    )
    t = time.perf_counter()
    convert_dataset(cfg)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--files", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3, help="runs per setting; the best counts")
    ap.add_argument("--markdown", help="update the bench_convert section of this markdown file")
    args = ap.parse_args()
    settings = [(1, False), (2, False), (1, True)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "collection"
        write_collection(root, args.files)
        load = os.getloadavg()[0]
        best = dict.fromkeys(settings, float("inf"))
        for r in range(args.repeats):  # interleaved, so a busy spell hits every setting
            for workers, audio in settings:
                seconds = run(root, Path(tmp) / f"data{r}", workers, audio)
                best[workers, audio] = min(best[workers, audio], seconds)
                load = max(load, os.getloadavg()[0])
        rows = [(w, a, args.files / best[w, a]) for w, a in settings]
    base = rows[0][2]
    table = Table(title=f"Conversion of {args.files} 1 s recordings (kws_mel40, 16 kHz)")
    for col in ("workers", "waveforms stored", "files/s", "vs 1 worker", "Speech Commands"):
        table.add_column(col, justify="right")
    cells = [
        (
            str(w),
            "yes" if a else "no",
            f"{r:,.0f}",
            f"{r / base:.2f}x",
            f"{SPEECH_COMMANDS_FILES / r / 60:.0f} min",
        )
        for w, a, r in rows
    ]
    for c in cells:
        table.add_row(*c)
    Console().print(table)
    if args.markdown:
        lines = [
            f"`python scripts/bench_convert.py --files {args.files} --repeats {args.repeats} "
            "--markdown docs/own_data.md`: files/s (the best of the repeats) for the whole "
            "conversion "
            "(listing, reading, resampling the quarter of files at 44.1 kHz, cutting to 1 s, "
            "40x101 mel images, writing), and the time the same rate would take for the "
            f"{SPEECH_COMMANDS_FILES:,} files of Speech Commands v0.02 (an extrapolation, not a "
            "measurement on that collection).",
            "",
            f"Machine: {machine_line()}; load average up to {load:.1f} while it ran (a shared "
            "machine: other jobs ran beside it). Each worker process also pays its start (a "
            "few seconds, importing torch), which a large collection amortises.",
            "",
            "| workers | waveforms stored | files/s | vs 1 worker | Speech Commands |",
            "|---:|---|---:|---:|---:|",
            *(f"| {' | '.join(c)} |" for c in cells),
        ]
        update_section(args.markdown, "bench_convert", "\n".join(lines))


if __name__ == "__main__":
    main()
