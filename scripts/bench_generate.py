"""Generation throughput per synth (records/s for the whole pipeline: labels, synth, images, write).

python scripts/bench_generate.py [--size N] [--synths saw moog fm] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from src.generate import generate_dataset
from src.utils.config import compose_config

from mdreport import machine_line, update_section


def run(synth: str, size: int, batch: int, spectrogram: str, out: Path) -> float:
    overrides = [
        f"synth={synth}",
        f"spectrogram={spectrogram}",
        f"dataset.size={size}",
        f"dataset.batch_size={batch}",
        f"dataset.out_dir={out}",
        f"dataset.name={synth}_{spectrogram}",
        "identifiability.enabled=false",
    ]
    cfg = compose_config("generate", overrides)
    t = time.perf_counter()
    generate_dataset(cfg)
    return size / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--moog-size", type=int, default=4096, help="records for the (slower) moog")
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--synths", nargs="+", default=["saw", "moog", "fm"])
    ap.add_argument("--spectrogram", default="mel")
    ap.add_argument("--markdown", help="update the generation section of this markdown file")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for synth in args.synths:
            size = args.moog_size if synth == "moog" else args.size
            rate = run(synth, size, args.batch, args.spectrogram, Path(tmp))
            rows.append((synth, size, rate))
    table = Table(title="Dataset generation (whole pipeline, 32x32x1 default image, 1 s at 8 kHz)")
    for col in ("synth", "records", "records/s"):
        table.add_column(col, justify="right")
    for synth, size, rate in rows:
        table.add_row(synth, str(size), f"{rate:,.0f}")
    Console().print(table)
    if args.markdown:
        lines = [
            "## Dataset generation",
            "",
            "`python scripts/bench_generate.py --markdown docs/performance.md`: records/s for the "
            "whole pipeline (label sampling, synthesis, spectrogram images, writing the files), "
            f"spectrogram config `{args.spectrogram}`, batch {args.batch}, 1 s notes at 8 kHz.",
            "",
            f"Machine: {machine_line()}.",
            "",
            "| synth | records | records/s |",
            "|---|---:|---:|",
            *(f"| {s} | {n} | {r:,.0f} |" for s, n, r in rows),
        ]
        update_section(args.markdown, "bench_generate", "\n".join(lines))


if __name__ == "__main__":
    main()
