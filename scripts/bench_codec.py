"""Encode and decode speed of every codec config on this CPU, as real-time factors.

    python scripts/bench_codec.py [--seconds 10] [--threads 1] [--markdown docs/performance.md]

Each codec (built from configs/model/codec_*.yaml at 16 kHz; speed does not depend on the
weights) encodes and decodes one clip of `--seconds` seconds, batch 1, in eval mode under
`torch.inference_mode`; the best of `--repeats` runs is kept. Real-time factor = audio
seconds / wall seconds (100 = a hundred times faster than real time). The issue's target: the
~5k codec at least 100x real time, encode and decode together.
"""

from __future__ import annotations

import argparse
import time

import hydra
import torch
from omegaconf import OmegaConf

from src.paths import CONFIG_DIR

from mdreport import machine_line, markdown_table, update_section

RATE = 16000
TARGET = {"codec_5k": 100.0}


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench(path, seconds: float, repeats: int) -> dict:
    cfg = OmegaConf.load(path)
    module = hydra.utils.instantiate(cfg, input_shape=[1, RATE], sample_rate=RATE)
    net = module.net
    x = torch.randn(1, 1, round(seconds * RATE), generator=torch.Generator().manual_seed(0)) * 0.1
    net.train()(x[..., : 4 * RATE])  # codebooks initialised from audio-like frames
    net.eval()
    with torch.inference_mode():
        codes = net.encode(x)
        enc = best_time(lambda: net.encode(x), repeats)
        dec = best_time(lambda: net.decode(codes, x.shape[-1]), repeats)
    return {
        "config": path.stem,
        "weights": module.param_counts["total"],
        "kbps": net.bitrate_kbps,
        "encode": seconds / enc,
        "decode": seconds / dec,
        "both": seconds / (enc + dec),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--markdown", help="update the codec section of this markdown file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted((CONFIG_DIR / "model").glob("codec_*.yaml"))
    results = sorted(
        (bench(p, args.seconds, args.repeats) for p in paths), key=lambda r: r["weights"]
    )
    cols = [
        "codec",
        "weights",
        "kbps",
        "encode x real time",
        "decode x real time",
        "both",
        "target",
    ]
    rows, status = [], 0
    for r in results:
        target = TARGET.get(r["config"])
        ok = "" if target is None else ("≥ 100 met" if r["both"] >= target else "≥ 100 MISSED")
        status |= int(target is not None and r["both"] < target)
        rows.append(
            [
                r["config"],
                f"{r['weights']:,}",
                f"{r['kbps']:.1f}",
                f"{r['encode']:,.0f}",
                f"{r['decode']:,.0f}",
                f"{r['both']:,.0f}",
                ok,
            ]
        )
    lines = markdown_table(cols, rows)
    print("\n".join(lines))
    if args.markdown:
        body = "\n".join(
            [
                "## Codec speed",
                "",
                f"`python scripts/bench_codec.py --seconds {args.seconds:g} --threads "
                f"{args.threads} --markdown {args.markdown}`: one {args.seconds:g} s clip at "
                f"16 kHz, batch 1, best of {args.repeats}; real-time factor = audio seconds / "
                f"wall seconds (encode, decode, and both in turn). Target (issue 12): the ~5k "
                f"codec ≥ 100x real time.",
                "",
                f"Machine: {machine_line()}.",
                "",
                *lines,
            ]
        )
        update_section(args.markdown, "bench_codec", body)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
