"""Recordings as frame windows (`data=wav_dir data.path=...`): real audio for the sequence task.

Every audio file under `path` is read mono at `sample_rate` and cut into clips of
`clip_seconds` (`src/audio/io.py` `load_clips`), each clip imaged with the same spectrogram
config as the phrase datasets (`SpectrogramImager`), so its frames are the frames a model
trained on phrases expects (eval checks this). Files are shared out to the splits by
`splits` (fractions of the files, in a seeded order, so no file is in two splits); the
default puts every file in test: evaluation. Training on recordings needs a train split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from src.audio.io import audio_files, load_clips
from src.data.frames import FrameWindows, SplitFrames, frame_facts, held
from src.errors import ConfigError, DataError
from src.imaging import SpectrogramImager
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)
SPLITS = ("train", "val", "test")
IMAGE_CHUNK = 64  # clips imaged at once


def assign_files(n: int, splits: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
    """Sorted file indices per split: `round(fraction * n)` files each in a seeded order
    (train takes what rounding leaves); a split with a positive fraction gets at least one."""
    fractions = {k: float(v) for k, v in splits.items() if float(v) > 0}
    unknown = set(splits) - set(SPLITS)
    if unknown or "test" not in fractions:
        raise ConfigError(f"data.splits must give a test fraction (and train, val), got {splits}")
    if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
        raise ConfigError(f"data.splits fractions must add up to 1, got {dict(splits)}")
    if n < len(fractions):
        raise ConfigError(f"{n} audio file(s) cannot fill the splits {sorted(fractions)}")
    counts = {k: max(1, round(v * n)) for k, v in fractions.items() if k != "train"}
    if "train" in fractions:
        counts["train"] = n - sum(counts.values())
    if sum(counts.values()) != n or min(counts.values()) < 1:
        raise ConfigError(f"{n} audio file(s) cannot be shared out as {dict(splits)}")
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for split in SPLITS:
        if split in counts:
            out[split] = np.sort(order[start : start + counts[split]])
            start += counts[split]
    return out


class WavFrameDataModule(FrameWindows):
    """Frame windows of the audio files under `path` (a folder, searched recursively, or one
    file). `spectrogram` is an imager config (configs/spectrogram/*.yaml; its width is the
    frame count of a clip of `clip_seconds`); `clip_hop_seconds` (default: the clip length)
    spaces the clips."""

    def __init__(
        self,
        path: str | Path,
        spectrogram: Mapping,
        sample_rate: int = 8000,
        clip_seconds: float = 4.0,
        clip_hop_seconds: float | None = None,
        splits: Mapping[str, float] | None = None,
        split_seed: int = 12345,
        channel: int | None = None,
        **windows,
    ) -> None:
        super().__init__(**windows)
        self.data_dir = Path(path)
        self.sample_rate = int(sample_rate)
        self.clip_samples = round(clip_seconds * self.sample_rate)
        self.clip_hop = round((clip_hop_seconds or clip_seconds) * self.sample_rate)
        if self.clip_samples < 1 or self.clip_hop < 1:
            raise ConfigError("data.clip_seconds and data.clip_hop_seconds must be positive")
        if isinstance(spectrogram, DictConfig):
            spectrogram = OmegaConf.to_container(spectrogram, resolve=True)
        try:
            self.imager = SpectrogramImager(
                sample_rate=self.sample_rate, n_samples=self.clip_samples, **dict(spectrogram)
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.spectrogram: {e}") from e
        self.frames, self.channel = frame_facts(self.imager.config(), channel, "data.spectrogram")
        self.n_frames = self.imager.width
        self.split_fractions = dict(splits or {"test": 1.0})
        self.split_seed = int(split_seed)
        self.files: list[Path] = []
        self.clip_sources: dict[str, list[dict]] = {}
        self._opened = False

    def open_splits(self) -> None:
        """Read, cut and image every file (once); a split's clips stay in memory."""
        if self._opened:
            return
        self.files = audio_files(self.data_dir)
        assigned = assign_files(len(self.files), self.split_fractions, self.split_seed)
        for split, index in assigned.items():
            files = [self.files[i] for i in index]
            clips, where = load_clips(files, self.sample_rate, self.clip_samples, self.clip_hop)
            if not torch.isfinite(clips).all():
                raise DataError(f"{self.data_dir}: non-finite samples in the {split} audio")
            images = torch.cat([self.imager(c) for c in clips.split(IMAGE_CHUNK)]).numpy()
            frames = np.ascontiguousarray(images[:, self.channel].transpose(0, 2, 1))
            codes = np.zeros((len(frames), 0), dtype=np.uint8)  # recordings carry no labels
            self.splits[split] = SplitFrames(partial(held, frames), True, None, codes, len(frames))
            self.clip_sources[split] = where
        log.info(
            f"{self.data_dir}: {len(self.files)} file(s) -> "
            + ", ".join(f"{s} {v.n_records} clips" for s, v in self.splits.items())
            + f" of {self.clip_samples / self.sample_rate:g} s ({self.n_frames} frames)"
        )
        self._opened = True
