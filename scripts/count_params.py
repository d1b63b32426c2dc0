"""Print the parameter count of every model config for one dataset's inputs and heads.

Model config names state their size (cnn_12k.yaml ...); this measures it, so names and
comments can be checked against the real count. Image models get the image shape, waveform
models (a net whose class takes audio) the waveform length and sample rate, sequence models
(seq_*.yaml) the frames of the default phrase data (64 mel bins).

    python scripts/count_params.py                             # default dataset shape/heads
    python scripts/count_params.py --input-shape 64x16x3 --heads pitch:9,level:8
    python scripts/count_params.py --dataset data/<a dataset folder>
    python scripts/count_params.py --modes regression configs/model/cnn_12k.yaml
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import hydra
from omegaconf import OmegaConf

from src.data.frames import recipe_frames
from src.data.spec import DataSpec
from src.data.vimh import ParamSpec, read_info
from src.generation.params import synth_heads
from src.models.multihead_module import net_input_kind
from src.paths import CONFIG_DIR

# The default dataset: configs/synth/saw.yaml's heads on 32x32x1 images of 1 s notes at 8 kHz.
DEFAULT_SHAPE = "32x32x1"
DEFAULT_SYNTH = "saw"
DEFAULT_SAMPLES = 8000
DEFAULT_RATE = 8000


def parse_shape(text: str) -> list[int]:
    """'HxWxC' (as in VIMH folder names) or 'C,H,W' -> an image input_shape."""
    if "x" in text:
        parts = [int(v) for v in text.lower().split("x")]
        if len(parts) == 2:
            parts.append(1)
        h, w, c = parts
        return [c, h, w]
    parts = [int(v) for v in text.split(",")]
    if len(parts) != 3:
        raise ValueError(f"input shape {text!r}: expected HxWxC or C,H,W")
    return parts


def parse_heads(text: str) -> tuple[ParamSpec, ...]:
    """'name:K,...' -> heads with K classes on the grid 0..K-1 (counts depend on K only)."""
    heads = []
    for item in text.split(","):
        name, k = item.split(":")
        heads.append(ParamSpec(name=name.strip(), min=0.0, max=float(int(k) - 1), step=1.0))
    return tuple(heads)


def _natural(path: Path) -> list:
    """cnn_12k < cnn_50k < cnn_250k: digit runs compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def count(config: Path, specs: dict[str, DataSpec], modes: str | None) -> dict:
    cfg = OmegaConf.load(config)
    spec = specs[net_input_kind(cfg.net._target_)]
    overrides = spec.model_kwargs()
    if modes is not None:
        overrides["head_modes"] = modes
    return hydra.utils.instantiate(cfg, **overrides).param_counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="*", type=Path, help="model configs (default: all)")
    parser.add_argument("--input-shape", default=None, help="HxWxC or C,H,W (default 32x32x1)")
    parser.add_argument("--audio-samples", type=int, default=None, help="waveform length")
    parser.add_argument("--sample-rate", type=int, default=None, help="waveform rate (Hz)")
    parser.add_argument("--heads", default=None, help="name:classes,... (default: saw dataset)")
    parser.add_argument("--dataset", type=Path, default=None, help="VIMH folder: shapes + heads")
    parser.add_argument("--modes", default=None, help="head mode for all heads (default: cfg)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    image_shape, heads = parse_shape(DEFAULT_SHAPE), synth_heads(DEFAULT_SYNTH)
    samples, rate = DEFAULT_SAMPLES, DEFAULT_RATE
    if args.dataset is not None:
        info = read_info(args.dataset)
        image_shape, heads = list(info.shape), info.params
        rate = int(info.raw.get("sample_rate", rate))
        samples = round(rate * float(info.raw.get("duration", samples / rate)))
    image_shape = parse_shape(args.input_shape) if args.input_shape else image_shape
    heads = parse_heads(args.heads) if args.heads else heads
    samples, rate = args.audio_samples or samples, args.sample_rate or rate
    specs = {
        "image": DataSpec("image", tuple(image_shape), rate, heads),
        "audio": DataSpec("audio", (1, samples), rate, heads),
        "frames": recipe_frames(OmegaConf.load(CONFIG_DIR / "data" / "phrase.yaml")),
    }
    configs = args.configs or sorted((CONFIG_DIR / "model").glob("*.yaml"), key=_natural)

    out = sys.stdout
    out.write(
        f"images (C,H,W) = {tuple(image_shape)}; waveforms {samples} samples at {rate} Hz; "
        f"heads: {', '.join(f'{h.name} {h.num_classes}' for h in heads)}\n"
    )
    out.write(f"{'config':<28} {'backbone':>12} {'heads':>10} {'total':>12}\n")
    status = 0
    for path in configs:
        try:
            c = count(path, specs, args.modes)
        except Exception as e:  # report and go on: one broken config should not hide the rest
            out.write(f"{path.name:<28} error: {type(e).__name__}: {e}\n")
            status = 1
            continue
        out.write(f"{path.name:<28} {c['backbone']:>12,} {c['heads']:>10,} {c['total']:>12,}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
