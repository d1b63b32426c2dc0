"""Waveform clips from several sources, for tasks that reconstruct audio (the codec).

Each source is one kind of sound: a VIMH dataset that stores its waveforms (given by a
`recipe`, generated on first use, or by `data_dir`) or a folder of the user's recordings
(`wav_dir`, cut into clips by `src/audio/io.py`). Batches are `(x, source)`: float32 (B, 1, T)
waveforms as stored (no normalisation) and the int64 index of each record's source, so a task
can report each kind of sound on its own. Sources named in `heldout` are kept out of training
and validation: only their test records are served, to measure generalisation to a kind of
sound the model never heard. Every source must have the module's sample rate and clip length.

Splits: a VIMH source keeps its own (validation carved out of train when it has no val file);
recordings are split by file (seeded), so no recording is heard in two splits, or by
contiguous blocks of clips when a folder holds fewer than three files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch

from src.audio.io import audio_files, load_clips
from src.data.batching import EpochBatches, VIMHLoader
from src.data.placement import placement
from src.data.spec import DataSpec
from src.data.splits import carve_val
from src.data.vimh import VIMHDataset
from src.errors import ConfigError, DataError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

SPLITS = ("train", "val", "test")
SOURCE_KINDS = ("recipe", "data_dir", "wav_dir")


def _split_files(n: int, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Indices of n items per split: a seeded permutation, at least one item each."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_val = max(1, round(test * n)), max(1, round(val * n))
    return {
        "test": np.sort(perm[:n_test]),
        "val": np.sort(perm[n_test : n_test + n_val]),
        "train": np.sort(perm[n_test + n_val :]),
    }


class WaveformDataModule(L.LightningDataModule):
    """Train/val/test waveform batches over named sources (see the module docstring).

    Args:
        sources: {name: {recipe: ...} | {data_dir: ...} | {wav_dir: ...}}.
        data_root: where recipe datasets live (`paths.data_dir`; given by `build_datamodule`).
        sample_rate, clip_s: every clip's rate and length.
        heldout: source names served only at test time.
        train_crop: random windows of this many samples per training record (None: whole
            clips); cheaper steps, and the model sees every offset.
        val_fraction, test_fraction, split_seed: how recordings are split by file.
        pin_memory: page-locked batches for a CUDA device.
        num_workers: must be 0: every split is one in-memory tensor, batches are slices of it
            (the key exists because the debug configs set it for every datamodule).
    """

    def __init__(
        self,
        sources: Mapping[str, Mapping],
        data_root: str | Path | None = None,
        sample_rate: int = 16000,
        clip_s: float = 1.0,
        heldout: Sequence[str] = (),
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        train_crop: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 12345,
        shuffle_seed: int = 0,
        pin_memory: bool = False,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if not sources:
            raise ConfigError("data.sources is empty: name at least one source of audio")
        self.sources = {str(k): dict(v) for k, v in sources.items()}
        for name, src in self.sources.items():
            kinds = [k for k in SOURCE_KINDS if src.get(k)]
            if len(kinds) != 1:
                raise ConfigError(
                    f"data.sources.{name} must give exactly one of {SOURCE_KINDS}, "
                    f"got {sorted(src)}"
                )
        unknown = sorted(set(heldout) - set(self.sources))
        if unknown:
            raise ConfigError(f"data.heldout names {unknown}, not among {sorted(self.sources)}")
        if len(set(heldout)) == len(self.sources):
            raise ConfigError("data.heldout holds every source: nothing is left to train on")
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.data_root = None if data_root is None else Path(data_root)
        self.data_dir = self.data_root or Path(".")  # what logs name (the sources' root)
        self.sample_rate = int(sample_rate)
        self.clip_samples = round(clip_s * self.sample_rate)
        if train_crop is not None and not 0 < int(train_crop) <= self.clip_samples:
            raise ConfigError(
                f"data.train_crop must be in 1..{self.clip_samples} (the clip), got {train_crop}"
            )
        self.train_crop = None if train_crop is None else int(train_crop)
        self.heldout = tuple(str(h) for h in heldout)
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.split_seed = int(split_seed)
        self.shuffle_seed = int(shuffle_seed or 0)
        self.pin_memory = bool(pin_memory)
        if num_workers:
            raise ConfigError(
                f"data.num_workers={num_workers}: this datamodule holds its splits in memory and "
                f"slices batches from them; it has no loader workers (set 0)"
            )
        self.folders: dict[str, Path] = {}
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._loaders: dict[tuple, VIMHLoader] = {}

    # --- what the model is built from --------------------------------------------------------
    @property
    def source_names(self) -> list[str]:
        return list(self.sources)

    @property
    def spec(self) -> DataSpec:
        return DataSpec("audio", (1, self.clip_samples), self.sample_rate, ())

    # --- sources -----------------------------------------------------------------------------
    def open_splits(self) -> None:
        """Find (or generate) every source's folder and check its rate and length."""
        if self.folders:
            return
        from src.data.provision import dataset_folder  # provision imports the generator

        for name, src in self.sources.items():
            where = f"data.sources.{name}"
            if src.get("wav_dir"):
                self.folders[name] = Path(src["wav_dir"])
                audio_files(self.folders[name])  # a missing or empty folder fails here
                continue
            if src.get("recipe") and self.data_root is None:
                raise ConfigError(f"{where}: a recipe source needs data_root (paths.data_dir)")
            folder = dataset_folder(src, self.data_root or ".")
            ds = VIMHDataset(folder)
            rate = int(ds.info.raw.get("sample_rate", 0))
            if rate != self.sample_rate:
                raise DataError(
                    f"{where} ({folder}): sample rate {rate} Hz, data.sample_rate is "
                    f"{self.sample_rate} Hz; generate it at that rate (dataset.sample_rate)"
                )
            n = ds.audio("train").shape[1]
            if n != self.clip_samples:
                raise DataError(
                    f"{where} ({folder}): {n} samples per record, data.clip_s gives "
                    f"{self.clip_samples}; generate it with dataset.duration={n / rate:g}"
                )
            if "test" not in ds:
                raise DataError(f"{where} ({folder}): no test split")
            self.folders[name] = folder

    def _vimh_splits(self, folder: Path) -> dict[str, np.ndarray]:
        ds = VIMHDataset(folder)
        out = {"test": np.array(ds.audio("test"))}
        if "val" in ds and len(ds["val"]) > 0:
            out["train"], out["val"] = np.array(ds.audio("train")), np.array(ds.audio("val"))
        else:
            audio = ds.audio("train")
            train, val = carve_val(len(audio), self.val_fraction, self.split_seed, folder)
            out["train"], out["val"] = audio[train], audio[val]
        return out

    def _wav_splits(self, folder: Path) -> dict[str, np.ndarray]:
        files = audio_files(folder)
        fractions = (self.val_fraction, self.test_fraction, self.split_seed)
        if len(files) >= 3:
            pick = _split_files(len(files), *fractions)
            out = {}
            for split, idx in pick.items():
                clips, _ = load_clips([files[i] for i in idx], self.sample_rate, self.clip_samples)
                out[split] = clips.numpy()
            return out
        clips, _ = load_clips(files, self.sample_rate, self.clip_samples)
        n = len(clips)
        if n < 3:
            raise DataError(f"{folder}: {n} clip(s) of {self.clip_samples} samples; need >= 3")
        n_test, n_val = max(1, round(self.test_fraction * n)), max(1, round(self.val_fraction * n))
        log.warning(f"{folder}: fewer than 3 files; splitting its {n} clips by time, not by file")
        return {
            "train": clips[: n - n_val - n_test].numpy(),
            "val": clips[n - n_val - n_test : n - n_test].numpy(),
            "test": clips[n - n_test :].numpy(),
        }

    def setup(self, stage: str | None = None) -> None:
        """Load every split of every source into memory (waveform sets of this task are small)."""
        if self._splits is not None:
            return
        self.open_splits()
        parts: dict[str, list[tuple[np.ndarray, int]]] = {s: [] for s in SPLITS}
        for i, (name, folder) in enumerate(self.folders.items()):
            kind = "wav_dir" if self.sources[name].get("wav_dir") else "vimh"
            splits = self._wav_splits(folder) if kind == "wav_dir" else self._vimh_splits(folder)
            for split in SPLITS if name not in self.heldout else ("test",):
                parts[split].append((splits[split], i))
            log.info(
                f"source {name}{' (held out)' if name in self.heldout else ''}: "
                + ", ".join(f"{s} {len(a)}" for s, a in splits.items())
                + f" clips from {folder}"
            )
        self._splits = {}
        for split, pieces in parts.items():
            x = np.concatenate([a for a, _ in pieces]).astype(np.float32, copy=False)
            src = np.concatenate([np.full(len(a), i, dtype=np.int64) for a, i in pieces])
            if len(x) == 0:
                raise DataError(f"no {split} records in any source")
            self._splits[split] = (torch.from_numpy(x)[:, None, :], torch.from_numpy(src))

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, T) float32 waveforms and (N,) int64 source indices of a split."""
        self.setup()
        return self._splits[split]

    # --- loaders -----------------------------------------------------------------------------
    def loader(self, split: str, shuffle: bool, batch_size: int) -> VIMHLoader:
        self.setup()
        rank, world_size, _ = placement(self.trainer)
        key = (split, shuffle, batch_size, rank, world_size)
        if key not in self._loaders:
            inputs, sources = self.tensors(split)
            batches = EpochBatches(
                len(inputs),
                batch_size,
                shuffle=shuffle,
                seed=self.shuffle_seed,
                rank=rank,
                world_size=world_size,
                pad=split == "train",
            )
            self._loaders[key] = VIMHLoader(
                batches, inputs=inputs, codes=sources, pin_memory=self.pin_memory
            )
        return self._loaders[key]

    def train_dataloader(self) -> VIMHLoader:
        return self.loader("train", True, self.batch_size)

    def val_dataloader(self) -> VIMHLoader:
        return self.loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> VIMHLoader:
        return self.loader("test", False, self.eval_batch_size)

    def predict_dataloader(self) -> VIMHLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        """Training batches: a random `train_crop` window of each record (its own offset)."""
        x, sources = batch
        trainer = self.trainer
        if self.train_crop and trainer is not None and trainer.training:
            b, _, t = x.shape
            start = torch.randint(0, t - self.train_crop + 1, (b, 1), device=x.device)
            idx = start + torch.arange(self.train_crop, device=x.device)[None, :]
            x = x[:, 0].gather(1, idx)[:, None, :]
        return x, sources

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "sample_rate": self.sample_rate,
            "sources": self.source_names,
            "heldout": list(self.heldout),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        trained = state_dict.get("sources")
        if trained is not None and list(trained) != self.source_names:
            log.warning(
                f"the checkpoint was trained with sources {trained}; these are "
                f"{self.source_names} (per-source metrics are named by this data config)"
            )
