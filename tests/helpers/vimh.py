"""Write tiny VIMH datasets for tests, in either record layout, optionally learnable.

A "learnable" dataset draws each image from its labels (a bright row placed by parameter 0
with brightness from parameter 1, a bright column from parameters 2 and 3, ...), so a small
network can reach high accuracy in a few epochs: training tests can then check learning, not
just that the loop runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.data.vimh import ParamSpec, VIMHWriter, build_info, dataset_folder_name, record_dtype

SAMPLE_RATE = 8000
DURATION = 0.25
SPEC_RANGE = (-80.0, 0.0)
DEFAULT_PARAMS = (
    ParamSpec("note_number", 48.0, 72.0, 3.0, description="MIDI note", unit="midi"),
    ParamSpec("note_velocity", 40.0, 120.0, 20.0, description="MIDI velocity"),
    ParamSpec("cutoff", 200.0, 3200.0, 1000.0, scale="linear", description="filter", unit="Hz"),
    ParamSpec("resonance", 0.0, 1.0, 0.25, description="filter Q"),
)


def default_params(n: int) -> tuple[ParamSpec, ...]:
    """n distinct small-grid parameters (the first four are named like synth parameters)."""
    out = list(DEFAULT_PARAMS[:n])
    for i in range(len(out), n):
        out.append(ParamSpec(f"param_{i}", 0.0, 4.0, 1.0))
    return tuple(out)


def draw_codes(params: Sequence[ParamSpec], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, P) uint8 codes of uniformly drawn grid classes (exact: code -> class round-trips)."""
    cols = [p.class_code(rng.integers(0, p.num_classes, size=n)) for p in params]
    return np.stack(cols, axis=1).astype(np.uint8).reshape(n, len(params))


def render(codes: np.ndarray, shape: tuple[int, int, int], learnable: bool, rng) -> np.ndarray:
    """(n, C, H, W) uint8 images; with `learnable` the labels are drawn into dim noise."""
    n = len(codes)
    c, h, w = shape
    if not learnable:
        return rng.integers(0, 256, size=(n, c, h, w), dtype=np.uint8)
    img = rng.integers(0, 32, size=(n, c, h, w), dtype=np.uint8)
    u = codes.astype(np.float64) / 255.0
    rows = np.arange(n)
    for j in range(0, codes.shape[1], 2):
        along_rows = (j // 2) % 2 == 0
        extent = h if along_rows else w
        pos = np.rint(u[:, j] * (extent - 1)).astype(np.int64)
        if j + 1 < codes.shape[1]:
            level = (96 + np.rint(u[:, j + 1] * 159)).astype(np.uint8)
        else:
            level = np.full(n, 200, dtype=np.uint8)
        if along_rows:
            cur = img[rows, :, pos, :]  # (n, C, W)
            img[rows, :, pos, :] = np.maximum(cur, level[:, None, None])
        else:
            cur = img[rows, :, :, pos]  # (n, C, H)
            img[rows, :, :, pos] = np.maximum(cur, level[:, None, None])
    return img


def synth_audio(codes: np.ndarray, n_samples: int) -> np.ndarray:
    """(n, T) float32 sines: pitch from parameter 0, amplitude from parameter 1 (if any)."""
    t = np.arange(n_samples) / SAMPLE_RATE
    u = codes.astype(np.float64) / 255.0
    freq = 200.0 + 800.0 * u[:, :1]
    amp = 0.2 + 0.6 * (u[:, 1:2] if codes.shape[1] > 1 else 0.5)
    return (amp * np.sin(2 * np.pi * freq * t[None, :])).astype(np.float32)


def make_vimh(
    tmp_path: str | Path,
    n_train: int = 64,
    n_val: int = 16,
    n_test: int = 16,
    height: int = 8,
    width: int = 8,
    channels: int = 1,
    params: Sequence[ParamSpec] | int | None = None,
    with_val: bool = True,
    version: str = "2.1",
    learnable: bool = True,
    audio_samples: int | None = None,
    *,
    seed: int = 0,
    name: str | None = None,
    chunk: int = 8192,
) -> Path:
    """Write a dataset under `tmp_path` and return its folder.

    `params`: ParamSpecs, a count of default parameters, or None for two. `with_val=False`
    leaves out the val file (and the `val_samples` key), as NSMT does. `version="2.0"` writes
    the older 6-byte-header layout by hand (VIMHWriter writes only 2.1).
    """
    if params is None:
        params = 2
    params = default_params(params) if isinstance(params, int) else tuple(params)
    sizes = {"train": n_train, "test": n_test}
    if with_val:
        sizes["val"] = n_val
    total = sum(sizes.values())
    folder = Path(tmp_path) / (
        name
        or dataset_folder_name(
            height, width, channels, SAMPLE_RATE, DURATION, total, "toy", len(params)
        )
    )
    info = build_info(
        dataset_name=folder.name,
        height=height,
        width=width,
        channels=channels,
        channel_labels=["Gray"] if channels == 1 else [f"ch{i}" for i in range(channels)],
        params=params,
        fixed_parameters={"duration": {"value": DURATION, "description": "seconds"}},
        split_sizes=sizes,
        sample_rate=SAMPLE_RATE,
        duration=DURATION,
        synth_type="toy",
        spectrogram_config={"type": "toy", "n_fft": 2 * height},
    )
    if not with_val:
        info.pop("val_samples")
    rng = np.random.default_rng(seed)
    shape = (channels, height, width)

    def batches(n: int):
        for start in range(0, n, chunk):
            b = min(chunk, n - start)
            codes = draw_codes(params, b, rng)
            yield render(codes, shape, learnable, rng), codes

    if version == "2.1":
        writer = VIMHWriter(
            folder,
            height=height,
            width=width,
            channels=channels,
            params=params,
            split_sizes=sizes,
            audio_samples=audio_samples,
        )
        with writer:
            for split, n in sizes.items():
                for pixels, codes in batches(n):
                    audio = synth_audio(codes, audio_samples) if audio_samples else None
                    writer.write(split, pixels, codes, *SPEC_RANGE, audio=audio)
            return writer.finish(info)
    if version != "2.0":
        raise ValueError(f"make_vimh writes layout '2.0' or '2.1', not {version!r}")
    info["version"] = "2.0"
    info["label_encoding"]["metadata_bytes"] = 6
    info["label_encoding"]["format"] = (
        "[height] [width] [channels] [N] [param1_id] [param1_val] [param2_id] [param2_val] ..."
    )
    info["label_encoding"].pop("scale_factors")
    folder.mkdir(parents=True)
    dtype = record_dtype("2.0", height, width, channels, len(params))
    for split, n in sizes.items():
        audio = (
            np.lib.format.open_memmap(
                folder / f"{split}_audio.npy", "w+", np.float32, (n, audio_samples)
            )
            if audio_samples
            else None
        )
        with open(folder / split, "wb") as f:
            start = 0
            for pixels, codes in batches(n):
                rec = np.zeros(len(codes), dtype=dtype)
                rec["height"], rec["width"], rec["channels"] = height, width, channels
                rec["n_params"] = len(params)
                rec["params"][:, :, 0] = np.arange(len(params), dtype=np.uint8)
                rec["params"][:, :, 1] = codes
                rec["pixels"] = pixels
                rec.tofile(f)
                if audio is not None:
                    audio[start : start + len(codes)] = synth_audio(codes, audio_samples)
                start += len(codes)
        if audio is not None:
            audio.flush()
            del audio
    (folder / "vimh_dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return folder
