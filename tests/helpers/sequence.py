"""Tiny phrase datasets and overrides shared by the sequence-task tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from src.audio.io import write_wav
from src.generate import generate_dataset
from src.utils.config import compose_config
from src.utils.threads import intra_op_threads

# What makes the tiny phrases: frames of 16 mel bins every 258 samples (1 s in 32 columns).
TINY_SPECTROGRAM = ["spectrogram.height=16", "spectrogram.width=32"]
# Windows that fit the tiny phrases, in the data config's keys.
TINY_WINDOWS = ["data.context=8", "data.horizon=4", "data.stride=4", "data.batch_size=16"]


def make_phrases(out: Path, size: int = 48, seed: int = 0) -> Path:
    """Generate `size` phrases of 1 s under `out`; returns the dataset folder."""
    cfg = compose_config(
        "generate",
        [
            "synth=phrase",
            "spectrogram=mel_phrase",
            *TINY_SPECTROGRAM,
            "dataset.duration=1.0",
            f"dataset.size={size}",
            f"dataset.batch_size={size}",
            f"dataset.seed={seed}",
            "identifiability.enabled=false",
            f"dataset.out_dir={out}",
        ],
    )
    with intra_op_threads(1):  # small batches: threads only contend
        return generate_dataset(cfg)


def on_phrases(folder: Path) -> list[str]:
    """Overrides of data=phrase (e.g. a sequence experiment's): an existing phrase folder
    instead of the recipe, tiny windows."""
    return ["data.recipe=null", f"data.data_dir={folder}", *TINY_WINDOWS]


def write_wavs(folder, n_files: int, seconds: float, sample_rate: int = 16000) -> list:
    """Tone sequences at another rate than the data's (resampled on reading)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    paths = []
    for i in range(n_files):
        freq = 200.0 * (1 + i) * (1 + (t % 0.5 > 0.25))  # a note change every quarter second
        audio = 0.3 * np.sin(2 * math.pi * np.cumsum(freq) / sample_rate)
        paths.append(write_wav(folder / f"sub{i % 2}" / f"take_{i}.wav", audio, sample_rate))
    return paths
