"""Micro-benchmark of synth render throughput (records/s) for tuning the synth internals.

Reports the best of ``--repeats`` timed renders, since on a shared machine the best run is
the one least disturbed by other processes. Example:

    .venv/bin/python scripts/bench_synths.py --synth moog --batch 4096 8192 --threads 2
    .venv/bin/python scripts/bench_synths.py --synth moog --kwargs '{"loop": "script"}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.synth.base import Synth
from src.synth.fm import FMSynth
from src.synth.moog import MoogSynth
from src.synth.saw import SawSynth

SYNTHS: dict[str, type[Synth]] = {"saw": SawSynth, "moog": MoogSynth, "fm": FMSynth}

# (min, max) per parameter: a representative spread for a default 8 kHz dataset.
RANGES = {
    "pitch": (36.0, 84.0),
    "level": (-24.0, 0.0),
    "decay": (0.0, 60.0),
    "attack": (0.005, 0.005),
    "cutoff": (48.0, 105.0),
    "resonance": (0.0, 0.95),
    "env_amount": (0.0, 36.0),
    "env_attack": (0.001, 0.2),
    "env_decay": (0.02, 0.8),
    "env_sustain": (0.0, 1.0),
    "env_release": (0.02, 0.3),
    "ratio": (0.5, 8.0),
    "index": (0.0, 8.0),
    "index_decay": (0.0, 40.0),
}


def random_values(synth: Synth, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.rand(batch, generator=g) * (RANGES[k][1] - RANGES[k][0]) + RANGES[k][0]
        for k in synth.param_names
    }


def bench(synth: Synth, batch: int, sample_rate: int, n_samples: int, repeats: int) -> float:
    """Best-of-``repeats`` records/s after one untimed warm-up render."""
    vals = random_values(synth, batch)
    g = torch.Generator().manual_seed(1)
    synth.render(vals, sample_rate, n_samples, g)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        synth.render(vals, sample_rate, n_samples, g)
        best = min(best, time.perf_counter() - t0)
    return batch / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synth", choices=sorted(SYNTHS), nargs="+", default=sorted(SYNTHS))
    ap.add_argument("--batch", type=int, nargs="+", default=[4096])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample-rate", type=int, default=8000)
    ap.add_argument("--duration", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kwargs", type=json.loads, default={}, help="constructor kwargs (JSON)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n_samples = round(args.sample_rate * args.duration)
    for name in args.synth:
        synth = SYNTHS[name](**args.kwargs)
        for batch in args.batch:
            rate = bench(synth, batch, args.sample_rate, n_samples, args.repeats)
            sys.stdout.write(
                f"{name:5s} batch={batch:6d} threads={args.threads} kwargs={args.kwargs} "
                f"{rate:10.0f} records/s\n"
            )


if __name__ == "__main__":
    main()
