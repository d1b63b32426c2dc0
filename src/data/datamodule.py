"""Lightning datamodule for VIMH datasets: splits, loading path, on-device transforms.

It wires three pieces: `batching` (which records, in which order, from memory or from the
memory-mapped files), `transforms` (normalisation and masking after transfer) and the VIMH
reader. Batches leave the loader as stored (uint8 images or float32 waveforms, int64 codes);
the float conversion, normalisation and augmentation happen in `on_after_batch_transfer`, on
the device, over the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch

from src.data.batching import Batch, EpochBatches, MemmapBatches, VIMHLoader
from src.data.placement import placement, split_device
from src.data.spec import INPUT_KINDS, DataSpec
from src.data.splits import Splits
from src.data.transforms import Normalize, channel_stats, check_augment, spec_augment
from src.data.vimh import ParamSpec, VIMHDataset, VIMHInfo, read_info
from src.data.vimh.classes import is_nominal
from src.errors import ConfigError, DataError, DatasetNotFoundError
from src.metrics.estimation import reference_value
from src.utils.build import short
from src.utils.checks import dataset_dir, memory_budget
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

REPRESENTATIONS = INPUT_KINDS
SHUFFLE_ORDERS = ("auto", "uniform", "block")


class VIMHDataModule(L.LightningDataModule):
    """Train/val/test batches of a VIMH dataset folder, ready for a multihead network.

    `spec` (heads, input shape, sample rate) comes from the JSON alone, right after
    construction, so a model can be built before any record is read. A dataset without a `val`
    file (as NSMT writes them) gets a validation set carved out of train with `val_fraction`
    and `split_seed`. `in_memory`: True loads each split into one tensor (fastest); False
    streams from the memory-mapped files with `num_workers` workers; "auto" loads when all the
    inputs fit in `max_memory_gb`. `shuffle_order`: the training order, "uniform" (a uniform
    permutation per epoch), "block" (`batching.block_order`: uniform over the split, read in
    runs of consecutive records) or "auto" (uniform in memory, block when streaming).
    `augment={"freq_mask": F, "time_mask": T, "n_masks": k}`
    masks rows (frequency) and columns (time) of training batches only.
    `representation="audio"` serves the stored waveforms (float32 (B, 1, T), not normalised,
    never masked) of a dataset generated with `dataset.store_audio=true`. `on_device`: "auto"
    keeps in-memory splits on a CUDA device (batches gathered there, no copy per step) when
    they fit in half its free memory; True on whatever device the model is on; False never.
    With several processes the batch size is per process; training shards are padded to equal
    length, validation and test shards are not (each record is evaluated exactly once).
    `balance="<head>"` (or true: the first categorical head, else the first head):
    class-balanced training batches: each epoch draws as many training records as there are,
    with replacement, each class of that head equally likely (records weighted by 1 / their
    class's count); validation and test are untouched.
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
        shuffle_order: str = "auto",
        on_device: bool | str = "auto",
        balance: str | bool | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.data_dir = Path(data_dir)
        if representation not in REPRESENTATIONS:
            raise ConfigError(
                f"data.representation must be one of {REPRESENTATIONS}, got {representation!r}"
            )
        for key, value in (("in_memory", in_memory), ("on_device", on_device)):
            if value not in ("auto", True, False):
                raise ConfigError(f"data.{key} must be 'auto', true or false, got {value!r}")
        if shuffle_order not in SHUFFLE_ORDERS:
            raise ConfigError(
                f"data.shuffle_order must be one of {SHUFFLE_ORDERS}, got {shuffle_order!r}"
            )
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        max_memory_gb = memory_budget(max_memory_gb)
        if not dataset_dir(self.data_dir).is_dir():
            raise DatasetNotFoundError(f"{self.data_dir}: VIMH dataset folder not found")
        self.info: VIMHInfo = read_info(self.data_dir)
        self.balance = self._balanced_head(balance)
        self.augment = check_augment(augment)
        self.n_samples: int | None = None
        if representation == "audio":
            if self.augment is not None:
                raise ConfigError(
                    "data.augment (SpecAugment masking of spectrogram images) does not apply to "
                    "representation='audio'; set data.augment=null"
                )
            self.n_samples = VIMHDataset(self.data_dir).audio("train").shape[1]
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.in_memory = in_memory
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.shuffle_seed = int(shuffle_seed or 0)  # a null run seed orders as seed 0
        self.max_memory_gb = max_memory_gb
        self.representation = representation
        self.drop_last = drop_last
        self.persistent_workers = persistent_workers
        self.normalize = normalize
        self.stats_max_records = stats_max_records
        self.shuffle_order = shuffle_order
        self.on_device = on_device

        self.dataset: VIMHDataset | None = None  # set once setup is complete
        self._splits: Splits | None = None
        self.use_memory: bool | None = None
        self.input_bytes = 0  # all splits' inputs, known after setup
        self.normalizer: Normalize | None = None
        self._masker = None if self.augment is None else spec_augment(self.augment)
        self._tensors: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._loaders: dict[tuple, VIMHLoader] = {}
        self._train_means: dict[str, float] | None = None

    # --- metadata, available at once -----------------------------------------------------------
    @property
    def heads(self) -> tuple[ParamSpec, ...]:
        return self.info.params

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) for images, (1, n_samples) for audio."""
        if self.representation == "audio":
            return (1, self.n_samples)
        return self.info.shape

    @property
    def spec(self) -> DataSpec:
        sr = self.info.raw.get("sample_rate")
        return DataSpec(
            input_kind=self.representation,
            input_shape=self.input_shape,
            sample_rate=None if sr is None else int(sr),
            heads=self.heads,
            train_means=self.train_means(),
        )

    def train_means(self) -> dict[str, float]:
        """Each head's mean label (natural units) over the training records, or a nominal
        head's most frequent class (`reference_value`), read once from the label bytes."""
        if self._train_means is None:
            codes = self.open_splits().codes("train")
            self._train_means = {
                p.name: reference_value(p, codes[:, i]) for i, p in enumerate(self.heads)
            }
        return self._train_means

    @property
    def class_names(self) -> dict[str, tuple[str, ...]]:
        """The class names of the dataset's nominal heads (recordings' categorical labels)."""
        return self.info.class_names

    def _balanced_head(self, balance: str | bool | None) -> str | None:
        """The head `balance` names: a head name, true (the first nominal head, else the
        first head), or null/false (none)."""
        if balance is None or balance is False:
            return None
        names = self.info.param_names
        if balance is True:
            nominal = [p.name for p in self.heads if is_nominal(p)]
            return (nominal or names)[0]
        if balance not in names:
            raise ConfigError(
                f"data.balance={balance!r} names no head of {self.data_dir}; heads are "
                f"{names} (true: the first categorical head; null: no class balancing)"
            )
        return balance

    def balance_weights(self) -> torch.Tensor:
        """Per training record, 1 / (records of its class of head `balance`)."""
        p = self.info.param_names.index(self.balance)
        spec = self.heads[p]
        classes = spec.class_index(spec.decode(self._split_codes("train")[:, p]))
        counts = np.bincount(classes, minlength=spec.num_classes)
        log.info(
            f"{self.data_dir.name}: class-balanced training on '{self.balance}': "
            f"{int((counts > 0).sum())} classes of {counts[counts > 0].min()} to {counts.max()} "
            f"records, each drawn equally often (with replacement)"
        )
        return torch.from_numpy(1.0 / counts[classes])

    @property
    def mean(self) -> torch.Tensor | None:
        return None if self.normalizer is None else self.normalizer.mean.cpu()

    @property
    def std(self) -> torch.Tensor | None:
        return None if self.normalizer is None else self.normalizer.std.cpu()

    # --- splits ----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Open the files, decide the splits and the path, compute statistics; only once."""
        if self.dataset is not None:
            return
        ds = self.open_splits().dataset
        if self.representation == "audio":
            for split in ds.splits:
                ds.audio(split)  # a clear error now, not in a loader worker later
        need = self.input_bytes = sum(len(ds[s]) for s in ds.splits) * self._record_nbytes()
        if self.in_memory == "auto":
            self.use_memory = need <= self.max_memory_gb * 2**30
            log.info(
                f"{self.data_dir.name}: {need / 2**30:.3f} GiB of {self.representation} inputs; "
                f"{'in memory' if self.use_memory else 'streaming from disk'} "
                f"(max_memory_gb={self.max_memory_gb})"
            )
        else:
            self.use_memory = bool(self.in_memory)
        self.dataset = ds
        if self.normalizer is None:
            self.normalizer = Normalize(*self._compute_stats())

    def open_splits(self) -> Splits:
        """Decide which records each split uses, reading no record (`Splits.open`): a missing
        or empty train or test split fails here, before any model is built."""
        if self._splits is None:
            self._splits = Splits.open(self.data_dir, self.val_fraction, self.split_seed)
        return self._splits

    @property
    def files(self) -> dict[str, str]:
        """Split -> the file its records come from."""
        return self.open_splits().files

    @property
    def rows(self) -> dict[str, np.ndarray | None]:
        """Split -> its record indices in that file (None: all of them)."""
        return self.open_splits().rows

    @property
    def val_carved(self) -> bool:
        return self.open_splits().val_carved

    def num_records(self, split: str) -> int:
        return self.open_splits().num_records(split)

    def _split_inputs(self, split: str) -> np.ndarray:
        return self.open_splits().inputs(split, audio=self.representation == "audio")

    def _split_codes(self, split: str) -> np.ndarray:
        return self.open_splits().codes(split)

    # --- statistics ------------------------------------------------------------------------------
    def _compute_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean/std of train pixels (a seeded subsample for big datasets)."""
        c = self.input_shape[0]
        if self.representation == "audio" or not self.normalize:  # used as they are
            return np.zeros(c), np.ones(c)
        n = self.num_records("train")
        pick = np.arange(n)
        if n > self.stats_max_records:
            rng = np.random.default_rng(self.split_seed)
            pick = np.sort(rng.choice(n, self.stats_max_records, replace=False))
        rows = self.rows["train"]
        mean, std = channel_stats(self._split_inputs("train"), pick if rows is None else rows[pick])
        log.info(
            f"{self.data_dir.name}: pixel mean {np.round(mean, 3).tolist()}, std "
            f"{np.round(std, 3).tolist()} (from {len(pick)} train records)"
        )
        return mean, std

    def state_dict(self) -> dict:
        """Normalisation statistics and split facts, saved in checkpoints for evaluation."""
        if self.normalizer is None:
            return {}
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "val_carved": self.val_carved,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
            # What the inputs were made with, so eval can refuse other data (tasks.py).
            "spectrogram_config": self.info.raw.get("spectrogram_config"),
            "channel_labels": self.info.raw.get("channel_labels"),
            "class_names": {k: list(v) for k, v in self.class_names.items()},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Take a checkpoint's statistics; loaded before `setup`, nothing is recomputed."""
        if not state_dict:
            return
        saved = state_dict if isinstance(state_dict, dict) else {}
        try:  # a checkpoint is untrusted input: its statistics must be finite numbers
            mean = torch.tensor(saved["mean"], dtype=torch.float32)
            std = torch.tensor(saved["std"], dtype=torch.float32)
            usable = bool(mean.isfinite().all() and std.isfinite().all() and (std > 0).all())
        except (KeyError, TypeError, ValueError, RuntimeError):
            usable = False
        if not usable:
            raise DataError(
                f"checkpoint {type(self).__name__} state: mean and std must be lists of finite "
                f"numbers (std > 0), got {short(saved.get('mean'))}, {short(saved.get('std'))}"
            )
        channels = self.input_shape[0]
        if mean.shape != (channels,) or std.shape != mean.shape:
            raise ConfigError(
                f"checkpoint statistics are for {mean.numel()} channels; dataset "
                f"{self.data_dir} has {channels}"
            )
        if self.normalizer is not None and not torch.allclose(self.mean, mean, atol=1e-3):
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
        self.normalizer = Normalize(mean, std)

    # --- loaders -------------------------------------------------------------------------------
    def tensors(self, split: str, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
        """The split as one contiguous tensor (uint8 images or float32 waveforms) and int64
        codes, loaded once (and copied once to `device`)."""
        self.setup()
        if device is not None and device.type != "cpu":
            if (split, str(device)) not in self._tensors:
                self._tensors[split, str(device)] = tuple(t.to(device) for t in self.tensors(split))
            return self._tensors[split, str(device)]
        if (split, "cpu") not in self._tensors:
            inputs = self._split_inputs(split)
            rows = self.rows[split]
            # A fresh in-memory copy either way (a contiguous memmap would otherwise pass
            # through np.ascontiguousarray uncopied and read-only).
            array = np.array(inputs, order="C") if rows is None else inputs[rows]
            codes = self._split_codes(split).astype(np.int64)
            self._tensors[split, "cpu"] = (torch.from_numpy(array), torch.from_numpy(codes))
            log.info(f"{self.data_dir.name}: loaded {split} ({len(array)} records) into memory")
        return self._tensors[split, "cpu"]

    def device(self) -> torch.device | None:
        """The device in-memory splits live on (the model's, on the GPU fast path), or None."""
        root = placement(self.trainer)[2]
        return split_device(self.on_device, bool(self.use_memory), root, self.input_bytes)

    def _record_nbytes(self) -> int:
        """Bytes of one record's inputs as served (float32 waveform or uint8 image)."""
        return self.n_samples * 4 if self.representation == "audio" else math.prod(self.info.shape)

    def _window(self, batch_size: int) -> int | None:
        """Records per shuffle window of the block order, or None for a uniform permutation."""
        block = self.shuffle_order == "block" or (
            self.shuffle_order == "auto" and not self.use_memory
        )
        return MemmapBatches.group_records(batch_size, self._record_nbytes()) if block else None

    def _stream(self, split: str, batches: EpochBatches) -> MemmapBatches:
        name = self.files[split]
        if self.representation == "audio":
            source = self.dataset.audio_source(name)
        else:
            source = self.dataset[name].pixel_source()
        return MemmapBatches(
            source,
            self._record_nbytes(),
            self._split_codes(split),
            self.rows[split],
            n_order=batches.per_rank,
            batch_size=batches.batch_size,
            n_batches=len(batches),
        )

    def loader(
        self,
        split: str,
        *,
        shuffle: bool,
        batch_size: int | None = None,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        pad: bool | None = None,
    ) -> VIMHLoader:
        """A (cached) loader of one split; rank/world_size default to the running trainer's;
        `pad` (default: train only) evens out the ranks' shards (see `EpochBatches`)."""
        self.setup()
        if rank is None or world_size is None:
            rank, world_size, _ = placement(self.trainer)
        batch_size = batch_size or self.batch_size
        pad = split == "train" if pad is None else pad
        device = self.device()
        key = (split, shuffle, batch_size, drop_last, rank, world_size, pad, str(device))
        if key in self._loaders:
            return self._loaders[key]
        n = self.num_records(split)
        if not pad and n < world_size:
            raise ConfigError(f"{self.data_dir}: {split} has {n} records for {world_size} ranks")
        batches = EpochBatches(
            n,
            batch_size,
            shuffle=shuffle,
            seed=self.shuffle_seed,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            window=self._window(batch_size) if shuffle else None,
            pad=pad,
            weights=self.balance_weights()
            if self.balance and split == "train" and shuffle
            else None,
        )
        if self.use_memory:
            inputs, codes = self.tensors(split, device)
            loader = VIMHLoader(
                batches,
                inputs=inputs,
                codes=codes,
                pin_memory=self.pin_memory,
                on_device=device is not None,
            )
        else:
            loader = VIMHLoader(
                batches,
                stream=self._stream(split, batches),
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
        if self._masker is not None and trainer is not None and trainer.training:
            x = self._masker(x)
        return x, codes

    def normalize_images(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalizer is None:
            self.setup()
        return self.normalizer(x)
