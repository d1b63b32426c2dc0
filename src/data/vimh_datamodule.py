"""Lightning datamodule for VIMH datasets: whole-batch loading, on-device normalisation.

Per-record `__getitem__` plus a Python collate costs more than a small network's step, so
batches are made whole: in memory by indexing one contiguous uint8 tensor with a seeded
per-epoch permutation (the fast path), or from the memory-mapped file one batch per read (the
streaming path, for datasets larger than RAM). Both paths yield identical
`(images uint8 (B,C,H,W), codes int64 (B,P))` batches for the same seed and epoch; the float
conversion, normalisation and augmentation happen in `on_after_batch_transfer`, on the
device, over the whole batch. With `representation="audio"` the same machinery serves the
stored waveforms instead, `(float32 (B,1,T), codes)`, as they are (already in [-1, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from src.data.vimh import ParamSpec, VIMHDataset, VIMHInfo, read_info
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
REPRESENTATIONS = ("image", "audio")
AUGMENT_KEYS = ("freq_mask", "time_mask", "n_masks")


# --- which records, in which order ----------------------------------------------------------
class EpochBatches:
    """The index batches of one split for one epoch and one rank.

    Lightning calls `set_epoch` on a loader's `.sampler` before every training epoch, so the
    shuffle changes per epoch without any wiring. The permutation is drawn from a
    `torch.Generator` seeded with `seed + epoch`; with several ranks each takes every
    `world_size`-th index of it, padded (or, with `drop_last`, cut) to equal lengths so that
    all ranks run the same number of steps.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.n = n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        if world_size == 1:
            self.per_rank = n
        elif drop_last:
            self.per_rank = n // world_size
        else:
            self.per_rank = math.ceil(n / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """This rank's record order for the current epoch, int64 (per_rank,)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        if self.world_size == 1:
            return order
        total = self.per_rank * self.world_size
        if total > self.n:  # pad with the start of the order, as DistributedSampler does
            reps = math.ceil(total / max(self.n, 1))
            order = order.repeat(reps)
        return order[:total][self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.drop_last:
            return self.per_rank // self.batch_size
        return math.ceil(self.per_rank / self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self.indices()
        for i in range(len(self)):
            yield order[i * self.batch_size : (i + 1) * self.batch_size]


# --- where the records come from ------------------------------------------------------------
class MemmapBatches(IterableDataset):
    """Batches read straight from a memory-mapped split file (the streaming path).

    Records are read a group of consecutive batches at a time (about 4 MiB): one
    fancy-indexed read with the record indices sorted, so pages are touched in file order,
    then put back in epoch order. Groups, not batches, cross the worker queue, because each
    message costs about a millisecond whatever its size. Worker w of W serves groups w, w+W,
    ..., which a DataLoader's round-robin turns back into the exact epoch order. The order
    lives in a shared-memory tensor rewritten in place each epoch, so persistent workers see
    it.
    """

    GROUP_BYTES = 4 << 20

    def __init__(
        self,
        path: Path,
        dtype: np.dtype,
        codes: np.ndarray,
        rows: np.ndarray | None,
        n_order: int,
        batch_size: int,
        n_batches: int,
    ) -> None:
        self.path = Path(path)
        self.dtype = dtype
        self.codes = np.ascontiguousarray(codes)  # (n, P) uint8, already split-local
        self.rows = rows  # split-local index -> record index in the file (None: identity)
        self.order = torch.zeros(n_order, dtype=torch.int64).share_memory_()
        self.batch_size = batch_size
        self.n_records = min(n_order, n_batches * batch_size)  # less with drop_last
        batch_bytes = batch_size * self.record_nbytes()
        self.group = batch_size * max(1, min(64, self.GROUP_BYTES // max(batch_bytes, 1)))
        self._pixels = None

    def record_nbytes(self) -> int:
        return self.dtype["pixels"].itemsize

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pixels"] = None  # a pickled memmap would carry the whole file
        return state

    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.memmap(self.path, dtype=self.dtype, mode="r")["pixels"]
        return self._pixels

    def fetch(self, local: np.ndarray) -> Batch:
        """Records `local` (split-local indices) in that order: uint8 images, int64 codes."""
        rec = local if self.rows is None else self.rows[local]
        srt = np.argsort(rec, kind="stable")
        got = self.pixels()[rec[srt]]
        images = np.empty_like(got)
        images[srt] = got
        codes = self.codes[local].astype(np.int64)
        return torch.from_numpy(images), torch.from_numpy(codes)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        order = self.order.numpy()
        for start in range(worker * self.group, self.n_records, n_workers * self.group):
            yield self.fetch(order[start : min(start + self.group, self.n_records)])


class AudioMemmapBatches(MemmapBatches):
    """The streaming path for waveforms: (B, 1, T) float32 read from `{split}_audio.npy`."""

    def __init__(
        self,
        path: Path,
        n_samples: int,
        codes: np.ndarray,
        rows: np.ndarray | None,
        n_order: int,
        batch_size: int,
        n_batches: int,
    ) -> None:
        self.n_samples = int(n_samples)
        super().__init__(path, np.dtype(np.float32), codes, rows, n_order, batch_size, n_batches)

    def record_nbytes(self) -> int:
        return self.n_samples * self.dtype.itemsize

    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.load(self.path, mmap_mode="r")[:, None, :]
        return self._pixels


def _as_is(batch: Batch) -> Batch:
    return batch


class VIMHLoader:
    """An iterable of whole batches that Lightning accepts as a dataloader.

    It is not a `DataLoader`, so Lightning injects no sampler of its own (sharding is done by
    `EpochBatches`); its `.sampler` is what Lightning calls `set_epoch` on. The permutation
    is drawn lazily, on the first batch, so an epoch set after `iter()` still counts.
    """

    batch_sampler = None  # Lightning's shuffle check looks for it

    def __init__(
        self,
        batches: EpochBatches,
        *,
        images: torch.Tensor | None = None,
        codes: torch.Tensor | None = None,
        stream: MemmapBatches | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
    ) -> None:
        if (images is None) == (stream is None):
            raise ValueError("give either in-memory images and codes or a stream")
        self.sampler = batches
        self.images = images
        self.codes = codes
        self.stream = stream
        self.num_workers = num_workers
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self._loader = None
        if stream is not None and num_workers > 0:
            self._loader = DataLoader(
                stream,
                batch_size=None,
                num_workers=num_workers,
                pin_memory=self.pin_memory,
                collate_fn=_as_is,
                persistent_workers=persistent_workers,
            )

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        if self.in_memory:
            yield from self._iter_memory()
        else:
            yield from self._iter_stream()

    def _iter_memory(self) -> Iterator[Batch]:
        s = self.sampler
        contiguous = not s.shuffle and s.world_size == 1
        images, codes = self.images, self.codes
        flat = images.numpy().reshape(len(images), -1)
        shape = images.shape[1:]
        codes_np = codes.numpy()
        for idx in s:
            if contiguous:  # in order: a zero-copy slice
                lo, hi = int(idx[0]), int(idx[-1]) + 1
                x, y = images[lo:hi], codes[lo:hi]
            else:
                # numpy's gather is single-threaded and as fast as torch's; torch's
                # index_select stalls on its thread pool when the cores are shared.
                i = idx.numpy()
                x = torch.from_numpy(np.take(flat, i, axis=0).reshape(len(i), *shape))
                y = torch.from_numpy(np.take(codes_np, i, axis=0))
            if self.pin_memory:
                x, y = x.pin_memory(), y.pin_memory()
            yield x, y

    def _iter_stream(self) -> Iterator[Batch]:
        self.stream.order.copy_(self.sampler.indices())
        bs = self.sampler.batch_size
        for x, y in self._loader if self._loader is not None else self.stream:
            if self.pin_memory and self._loader is None:
                x, y = x.pin_memory(), y.pin_memory()
            for s in range(0, len(x), bs):  # groups hold whole batches, the last maybe short
                yield x[s : s + bs], y[s : s + bs]


# --- the datamodule -------------------------------------------------------------------------
class VIMHDataModule(L.LightningDataModule):
    """Train/val/test batches of a VIMH dataset folder, ready for a multihead network.

    `heads` and `input_shape` come from the JSON alone, right after construction, so a model
    can be built before any record is read. A dataset without a `val` file (as NSMT writes
    them) gets a validation set carved out of train with `val_fraction` and `split_seed`.
    `in_memory`: True loads each split into one tensor (fastest); False streams from the
    memory-mapped files with `num_workers` workers; "auto" loads when all the pixels fit in
    `max_memory_gb`. `augment={"freq_mask": F, "time_mask": T, "n_masks": k}` masks rows
    (frequency) and columns (time) of training batches only. `representation="audio"` serves
    the stored waveforms (float32 (B, 1, T), not normalised, never masked) of a dataset
    generated with `dataset.store_audio=true`; `input_shape` is then (1, T).
    """

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
        in_memory: bool | str = "auto",
        val_fraction: float = 0.1,
        split_seed: int = 12345,
        shuffle_seed: int = 0,
        augment: Mapping | None = None,
        max_memory_gb: float = 4.0,
        representation: str = "image",
        drop_last: bool = False,
        eval_batch_size: int | None = None,
        persistent_workers: bool = True,
        normalize: bool = True,
        stats_max_records: int = 50_000,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.data_dir = Path(data_dir)
        if representation not in REPRESENTATIONS:
            raise ValueError(
                f"representation must be one of {REPRESENTATIONS}, got {representation!r}"
            )
        if in_memory not in ("auto", True, False):
            raise ValueError(f"in_memory must be 'auto', True or False, got {in_memory!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"{self.data_dir}: VIMH dataset folder not found")
        self.info: VIMHInfo = read_info(self.data_dir)
        self.n_samples: int | None = None
        if representation == "audio":
            self.n_samples = self._audio_length()
            if self._check_augment(augment) is not None:
                raise ValueError(
                    "augment (SpecAugment masking of spectrogram images) does not apply to "
                    "representation='audio'; set augment=null"
                )
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.in_memory = in_memory
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.shuffle_seed = shuffle_seed
        self.augment = self._check_augment(augment)
        self.max_memory_gb = max_memory_gb
        self.representation = representation
        self.drop_last = drop_last
        self.persistent_workers = persistent_workers
        self.normalize = normalize
        self.stats_max_records = stats_max_records

        self.dataset: VIMHDataset | None = None
        self.rows: dict[str, np.ndarray | None] = {}  # split -> record indices in its file
        self.files: dict[str, str] = {}  # split -> the file its records come from
        self.val_carved = False
        self.use_memory: bool | None = None
        self.mean: torch.Tensor | None = None  # (C,) pixel units
        self.std: torch.Tensor | None = None
        self._tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._loaders: dict[tuple, VIMHLoader] = {}
        self._device_stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._maskers = None

    # --- metadata, available at once -----------------------------------------------------------
    @property
    def dataset_info(self) -> VIMHInfo:
        return self.info

    @property
    def heads(self) -> tuple[ParamSpec, ...]:
        return self.info.params

    @property
    def head_configs(self) -> list[dict]:
        """The heads as plain dicts (name + mapping), the form MultiheadModule takes."""
        return [{"name": p.name, **p.mapping()} for p in self.info.params]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) for images, (1, n_samples) for audio."""
        if self.representation == "audio":
            return (1, self.n_samples)
        return self.info.shape

    def _audio_length(self) -> int:
        """Samples per stored waveform, from the .npy header (nothing loaded); clear error if
        the dataset stores no audio."""
        path = self.data_dir / "train_audio.npy"
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.data_dir}: representation='audio' needs stored waveforms, but this "
                f"dataset has none ({path.name} missing); generate it with "
                f"dataset.store_audio=true"
            )
        shape = np.load(path, mmap_mode="r").shape
        if len(shape) != 2 or shape[1] < 1:
            raise ValueError(f"{path}: expected a (N, n_samples) array, got shape {shape}")
        audio_info = self.info.raw.get("audio")
        declared = audio_info.get("n_samples") if isinstance(audio_info, dict) else None
        if declared is not None and int(declared) != shape[1]:
            raise ValueError(
                f"{path}: holds {shape[1]} samples per record but {self.info.path.name} says "
                f"audio.n_samples = {declared}"
            )
        return int(shape[1])

    @staticmethod
    def _check_augment(augment: Mapping | None) -> dict | None:
        if augment is None:
            return None
        augment = dict(augment)
        unknown = set(augment) - set(AUGMENT_KEYS)
        if unknown:
            raise ValueError(f"augment: unknown keys {sorted(unknown)}; expected {AUGMENT_KEYS}")
        out = {
            "freq_mask": int(augment.get("freq_mask", 0) or 0),
            "time_mask": int(augment.get("time_mask", 0) or 0),
            "n_masks": int(augment.get("n_masks", 1) or 0),
        }
        if min(out.values()) < 0:
            raise ValueError(f"augment values must be >= 0, got {out}")
        if out["n_masks"] == 0 or out["freq_mask"] + out["time_mask"] == 0:
            return None
        return out

    # --- splits ----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Open the files, decide the splits and the path, compute statistics; only once."""
        if self.dataset is not None:
            return
        ds = VIMHDataset(self.data_dir)
        if "test" not in ds:
            raise FileNotFoundError(
                f"{self.data_dir}: no 'test' split file; a VIMH dataset needs train and test "
                f"(val is optional and is then carved out of train)"
            )
        self.rows = {"test": None}
        self.files = {"train": "train", "test": "test"}
        if "val" in ds:
            self.rows.update(train=None, val=None)
            self.files["val"] = "val"
        else:
            self._carve_val(len(ds["train"]))
            self.files["val"] = "train"
        if self.representation == "audio" and not ds.audio_available:
            missing = [
                f"{s}_audio.npy"
                for s in ds.splits
                if not (self.data_dir / f"{s}_audio.npy").is_file()
            ]
            raise FileNotFoundError(
                f"{self.data_dir}: representation='audio' needs stored waveforms for every split; "
                f"missing {missing}; generate it with dataset.store_audio=true"
            )
        self.dataset = ds
        if self.in_memory == "auto":
            per_record = (
                self.n_samples * 4 if self.representation == "audio" else math.prod(self.info.shape)
            )
            need = sum(len(ds[s]) for s in ds.splits) * per_record
            self.use_memory = need <= self.max_memory_gb * 2**30
            what = "waveforms" if self.representation == "audio" else "pixels"
            log.info(
                f"{self.data_dir.name}: {need / 2**30:.3f} GiB of {what}; "
                f"{'in memory' if self.use_memory else 'streaming from disk'} "
                f"(max_memory_gb={self.max_memory_gb})"
            )
        else:
            self.use_memory = bool(self.in_memory)
        if self.mean is None:
            self.mean, self.std = self._compute_stats()

    def _carve_val(self, n: int) -> None:
        n_val = round(self.val_fraction * n)
        if n_val < 1 or n_val >= n:
            raise ValueError(
                f"{self.data_dir}: no 'val' file, and val_fraction={self.val_fraction} of "
                f"{n} train records gives {n_val} for validation; need 1..{n - 1}"
            )
        perm = np.random.default_rng(self.split_seed).permutation(n)
        self.rows["val"] = np.sort(perm[:n_val])
        self.rows["train"] = np.sort(perm[n_val:])
        self.val_carved = True
        log.info(
            f"{self.data_dir.name}: no 'val' file; validation = {n_val} of {n} train records "
            f"(val_fraction={self.val_fraction}, split_seed={self.split_seed}), "
            f"training on the other {n - n_val}; test untouched"
        )

    def num_records(self, split: str) -> int:
        self.setup()
        if split not in self.rows:
            raise KeyError(f"unknown split {split!r}; expected train, val or test")
        rows = self.rows[split]
        return len(self.dataset[self.files[split]]) if rows is None else len(rows)

    def _split_images(self, split: str) -> np.ndarray:
        """(N, C, H, W) uint8 memmap view of the file behind `split` (not yet subset)."""
        return self.dataset[self.files[split]].images

    def _split_inputs(self, split: str) -> np.ndarray:
        """(N, C, H, W) uint8 images or (N, 1, T) float32 waveforms, as memmap views."""
        if self.representation == "audio":
            return self.dataset.audio(self.files[split])[:, None, :]
        return self._split_images(split)

    def _split_codes(self, split: str) -> np.ndarray:
        codes = self.dataset[self.files[split]].codes
        rows = self.rows[split]
        return codes if rows is None else codes[rows]

    # --- statistics ------------------------------------------------------------------------------
    def _compute_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean/std of train pixels, exact from byte histograms (no float copy)."""
        c = self.info.channels
        if self.representation == "audio":  # waveforms are used as they are
            return torch.zeros(1), torch.ones(1)
        if not self.normalize:
            return torch.zeros(c), torch.ones(c)
        n = self.num_records("train")
        rows = self.rows["train"]
        pick = np.arange(n)
        if n > self.stats_max_records:
            rng = np.random.default_rng(self.split_seed)
            pick = np.sort(rng.choice(n, self.stats_max_records, replace=False))
        if rows is not None:
            pick = rows[pick]
        images = self._split_images("train")
        hist = np.zeros((c, 256), dtype=np.int64)
        for start in range(0, len(pick), 4096):
            chunk = images[pick[start : start + 4096]]
            for ch in range(c):
                hist[ch] += np.bincount(chunk[:, ch].reshape(-1), minlength=256)
        levels = np.arange(256, dtype=np.float64)
        count = hist.sum(axis=1)
        mean = hist @ levels / count
        var = (hist * (levels[None, :] - mean[:, None]) ** 2).sum(axis=1) / count
        std = np.sqrt(var)
        std[std < 1e-6] = 1.0  # a constant channel: centre it, do not blow it up
        log.info(
            f"{self.data_dir.name}: pixel mean {np.round(mean, 3).tolist()}, std "
            f"{np.round(std, 3).tolist()} (from {len(pick)} train records)"
        )
        return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)

    def state_dict(self) -> dict:
        """Normalisation statistics and split facts, saved in checkpoints for evaluation."""
        if self.mean is None:
            return {}
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "val_carved": self.val_carved,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        mean = torch.tensor(state_dict["mean"], dtype=torch.float32)
        std = torch.tensor(state_dict["std"], dtype=torch.float32)
        channels = self.input_shape[0]
        if mean.shape != (channels,) or std.shape != mean.shape:
            raise ValueError(
                f"checkpoint statistics are for {mean.numel()} channels; this dataset has "
                f"{channels}"
            )
        if self.mean is not None and not torch.allclose(self.mean, mean, atol=1e-3):
            log.warning(
                f"normalisation statistics from the checkpoint ({mean.tolist()}, "
                f"{std.tolist()}) differ from this dataset's ({self.mean.tolist()}, "
                f"{self.std.tolist()}); using the checkpoint's"
            )
        for key in ("val_fraction", "split_seed"):
            if state_dict.get("val_carved") and state_dict.get(key) != getattr(self, key):
                log.warning(
                    f"checkpoint carved validation with {key}={state_dict.get(key)}, "
                    f"this run uses {getattr(self, key)}"
                )
        self.mean, self.std = mean, std
        self._device_stats.clear()

    # --- loaders -------------------------------------------------------------------------------
    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None and hasattr(trainer, "world_size"):
            return int(trainer.global_rank), int(trainer.world_size)
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _tensors_of(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The split as one contiguous tensor (uint8 images or float32 waveforms) and int64
        codes (loaded once)."""
        if split not in self._tensors:
            images = self._split_inputs(split)
            rows = self.rows[split]
            # A fresh in-memory copy either way (a contiguous memmap would otherwise pass
            # through np.ascontiguousarray uncopied and read-only).
            array = np.array(images, order="C") if rows is None else images[rows]
            codes = self._split_codes(split).astype(np.int64)
            self._tensors[split] = (torch.from_numpy(array), torch.from_numpy(codes))
            log.info(f"{self.data_dir.name}: loaded {split} ({len(array)} records) into memory")
        return self._tensors[split]

    def loader(
        self,
        split: str,
        *,
        shuffle: bool,
        batch_size: int | None = None,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> VIMHLoader:
        """A (cached) loader of one split; rank/world_size default to the running trainer's."""
        self.setup()
        if rank is None or world_size is None:
            rank, world_size = self._rank_world()
        batch_size = batch_size or self.batch_size
        key = (split, shuffle, batch_size, drop_last, rank, world_size)
        if key in self._loaders:
            return self._loaders[key]
        n = self.num_records(split)
        batches = EpochBatches(
            n,
            batch_size,
            shuffle=shuffle,
            seed=self.shuffle_seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
        )
        if self.use_memory:
            images, codes = self._tensors_of(split)
            loader = VIMHLoader(batches, images=images, codes=codes, pin_memory=self.pin_memory)
        else:
            common = dict(n_order=batches.per_rank, batch_size=batch_size, n_batches=len(batches))
            codes, rows = self._split_codes(split), self.rows[split]
            if self.representation == "audio":
                path = self.data_dir / f"{self.files[split]}_audio.npy"
                stream = AudioMemmapBatches(path, self.n_samples, codes, rows, **common)
            else:
                file = self.dataset[self.files[split]]
                stream = MemmapBatches(file.path, file.dtype, codes, rows, **common)
            loader = VIMHLoader(
                batches,
                stream=stream,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                persistent_workers=self.persistent_workers,
            )
        self._loaders[key] = loader
        return loader

    def train_dataloader(self) -> VIMHLoader:
        return self.loader("train", shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> VIMHLoader:
        return self.loader("val", shuffle=False, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> VIMHLoader:
        return self.loader("test", shuffle=False, batch_size=self.eval_batch_size)

    def predict_dataloader(self) -> VIMHLoader:
        return self.test_dataloader()

    # --- on-device batch transform ---------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int = 0) -> Batch:
        """uint8 -> normalised float32 for every batch; masking for training batches only."""
        x, codes = batch
        if x.dtype == torch.uint8:
            x = self.normalize_images(x)
        trainer = self.trainer
        if self.augment is not None and trainer is not None and trainer.training:
            x = self.augment_images(x)
        return x, codes

    def normalize_images(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            self.setup()
        stats = self._device_stats.get(x.device)
        if stats is None:
            shape = (1, -1, 1, 1)
            scale = (1.0 / self.std).view(shape).to(x.device)
            shift = (-self.mean / self.std).view(shape).to(x.device)
            stats = self._device_stats[x.device] = (scale, shift)
        scale, shift = stats
        if x.device.type == "cpu":
            # numpy runs this single-threaded: torch's intra-op threads gain nothing on a
            # half-megabyte batch and stall badly when the cores are shared (measured 10x).
            a = x.numpy().astype(np.float32)
            a *= scale.numpy()
            a += shift.numpy()
            return torch.from_numpy(a)
        return x.float().mul_(scale).add_(shift)

    def augment_images(self, x: torch.Tensor) -> torch.Tensor:
        """SpecAugment-style masks, drawn independently per example (and channel); masked
        pixels get 0, the normalised mean."""
        if self._maskers is None:
            import torchaudio.transforms as T  # only needed when augmenting

            a = self.augment
            self._maskers = [
                m
                for m in (
                    T.FrequencyMasking(a["freq_mask"], iid_masks=True) if a["freq_mask"] else None,
                    T.TimeMasking(a["time_mask"], iid_masks=True) if a["time_mask"] else None,
                )
                if m is not None
            ]
        for _ in range(self.augment["n_masks"]):
            for masker in self._maskers:
                x = masker(x)
        return x
