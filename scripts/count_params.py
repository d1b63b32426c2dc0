"""Print the parameter count of every model config for one input shape and head list.

Model config names state their size (cnn_10k.yaml ...); this measures it, so names and
comments can be checked against the real count.

    python scripts/count_params.py                             # default dataset shape/heads
    python scripts/count_params.py --input-shape 64x16x3 --heads pitch:9,level:8
    python scripts/count_params.py --dataset data/vimh-32x32x1_8000Hz_1p0s_16384dss_saw_3p
    python scripts/count_params.py --modes regression configs/model/cnn_10k.yaml
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from src.data.vimh import ParamSpec, read_info  # noqa: E402

# The default dataset (configs/synth/saw.yaml): 32x32x1 with pitch 9, level 8, decay 10.
DEFAULT_SHAPE = "32x32x1"
DEFAULT_HEADS = "pitch:9,level:8,decay:10"


def parse_shape(text: str) -> list[int]:
    """'HxWxC' (as in VIMH folder names), 'C,H,W', or 'C,T' for waveforms -> input_shape."""
    if "x" in text:
        parts = [int(v) for v in text.lower().split("x")]
        if len(parts) == 2:
            parts.append(1)
        h, w, c = parts
        return [c, h, w]
    parts = [int(v) for v in text.split(",")]
    if len(parts) not in (2, 3):
        raise ValueError(f"input shape {text!r}: expected C,H,W or C,T")
    return parts


def parse_heads(text: str) -> list[dict]:
    """'name:K,...' -> heads with K classes on the grid 0..K-1 (counts depend on K only)."""
    heads = []
    for item in text.split(","):
        name, k = item.split(":")
        spec = ParamSpec(name=name.strip(), min=0.0, max=float(int(k) - 1), step=1.0)
        heads.append({"name": spec.name, **spec.mapping()})
    return heads


def _natural(path: Path) -> list:
    """cnn_10k < cnn_50k < cnn_250k: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def count(config: Path, heads: list[dict], input_shape: list[int], modes: str | None) -> dict:
    cfg = OmegaConf.load(config)
    overrides = {"heads": heads, "input_shape": input_shape}
    if modes is not None:
        overrides["head_modes"] = modes
    model = hydra.utils.instantiate(cfg, **overrides)
    counts = getattr(model, "param_counts", None)
    if counts is None:
        total = sum(p.numel() for p in model.parameters())
        counts = {"backbone": None, "heads": None, "total": total}
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="*", type=Path, help="model configs (default: all)")
    parser.add_argument("--input-shape", default=None, help="HxWxC or C,H,W (default 32x32x1)")
    parser.add_argument("--heads", default=None, help="name:classes,... (default: saw dataset)")
    parser.add_argument("--dataset", type=Path, default=None, help="VIMH folder: shape + heads")
    parser.add_argument("--modes", default=None, help="head mode for all heads (default: cfg)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    if args.dataset is not None:
        info = read_info(args.dataset)
        input_shape = list(info.shape)
        heads = [{"name": p.name, **p.mapping()} for p in info.params]
    else:
        input_shape, heads = [1, 32, 32], parse_heads(DEFAULT_HEADS)
    if args.input_shape:
        input_shape = parse_shape(args.input_shape)
    if args.heads:
        heads = parse_heads(args.heads)
    configs = args.configs or sorted((ROOT / "configs" / "model").glob("*.yaml"), key=_natural)

    head_text = ", ".join(
        f"{h['name']} {ParamSpec.from_mapping(h['name'], h).num_classes}" for h in heads
    )
    out = sys.stdout
    out.write(f"input (C,H,W) = {tuple(input_shape)}; heads: {head_text}\n")
    out.write(f"{'config':<28} {'backbone':>12} {'heads':>10} {'total':>12}\n")
    status = 0
    for path in configs:
        try:
            c = count(path, heads, input_shape, args.modes)
        except Exception as e:  # report and go on: one broken config should not hide the rest
            out.write(f"{path.name:<28} error: {type(e).__name__}: {e}\n")
            status = 1
            continue
        b = "-" if c["backbone"] is None else f"{c['backbone']:,}"
        h = "-" if c["heads"] is None else f"{c['heads']:,}"
        out.write(f"{path.name:<28} {b:>12} {h:>10} {c['total']:>12,}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
