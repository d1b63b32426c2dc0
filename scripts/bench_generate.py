"""Generation throughput per synth (records/s for the whole pipeline: labels, synth, images, write).

python scripts/bench_generate.py [--size N] [--synths saw moog fm] [--threads T] [--markdown PATH]

Synths are run in turn, --repeats times, interleaved (medians reported), so slow drift of the
machine's load hits every row alike; the Moog runs with its compiled ladder and, as a
reference in the same process, with the torch loop (`NSM_LADDER=torch`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from src.generate import generate_dataset
from src.utils.config import compose_config

from mdreport import load_note, machine_line, target_status, update_section

# Issue 28's targets on the 2-core CPU machine (records/s, whole pipeline, default recipe).
TARGETS = {"saw": 20_000, "moog": 10_000}
TORCH_LOOP = "moog (torch loop)"


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
    root = generate_dataset(cfg)
    rate = size / (time.perf_counter() - t)
    shutil.rmtree(root)  # the next run writes afresh, outside the timing
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--moog-size", type=int, default=4096, help="records for the moog")
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--synths", nargs="+", default=["saw", "moog", "fm"])
    ap.add_argument("--spectrogram", default="mel")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-torch-loop", action="store_true", help="skip the moog's torch loop")
    ap.add_argument("--markdown", help="update the generation section of this markdown file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    names = list(args.synths)
    if "moog" in names and not args.no_torch_loop:
        names.insert(names.index("moog") + 1, TORCH_LOOP)
    rates: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:  # warm-up: imports, numba's cache, allocator
            os.environ["NSM_LADDER"] = "torch" if name == TORCH_LOOP else ""
            run(name.split()[0], args.batch, args.batch, args.spectrogram, Path(tmp))
        for _ in range(args.repeats):
            for name in names:
                synth = name.split()[0]
                size = args.moog_size if synth == "moog" else args.size
                os.environ["NSM_LADDER"] = "torch" if name == TORCH_LOOP else ""
                rates[name].append(run(synth, size, args.batch, args.spectrogram, Path(tmp)))
        os.environ["NSM_LADDER"] = ""
    rows = []
    for name in names:
        size = args.moog_size if name.startswith("moog") else args.size
        rate = statistics.median(rates[name])
        target = TARGETS.get(name)
        status = "-" if target is None else target_status(rate, target)
        goal = "-" if target is None else f">= {target:,}"
        rows.append((name, str(size), f"{rate:,.0f}", goal, status))
    cols = ("synth", "records", "records/s", "target", "status")
    table = Table(title="Dataset generation (whole pipeline, 32x32x1 default image, 1 s at 8 kHz)")
    for col in cols:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if args.markdown:
        lines = [
            "## Dataset generation",
            "",
            "`python scripts/bench_generate.py --markdown docs/performance.md`: records/s for the "
            "whole pipeline (label sampling, synthesis, spectrogram images, writing the files), "
            f"spectrogram config `{args.spectrogram}`, batch {args.batch}, 1 s notes at 8 kHz; "
            f"median of {args.repeats} runs, the synths interleaved. *moog (torch loop)*: the "
            "same Moog with its ladder's sample loop in torch instead of the compiled kernel "
            "(`src/synth/ladder_kernel.py`), for comparison. Targets: issue 28.",
            "",
            f"Machine: {machine_line()}.",
            "",
            "| " + " | ".join(cols) + " |",
            "|---|---:|---:|---:|---|",
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
        note = load_note()
        if note:
            lines += ["", note]
        update_section(args.markdown, "bench_generate", "\n".join(lines))


if __name__ == "__main__":
    main()
