"""Which records each split of a VIMH folder uses: its own file, or, for a folder written
without a val file (as NSMT writes them), validation carved out of train by a seeded draw.

Deciding the splits reads the headers only, never a record, so the entry points can refuse a
missing or empty split before any model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.data.vimh import VIMHDataset
from src.errors import ConfigError, DataError, DatasetNotFoundError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

SPLITS = ("train", "val", "test")


def carve_val(
    n: int, val_fraction: float, seed: int, where: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) record indices of a train file without a val file beside it."""
    n_val = round(val_fraction * n)
    if n_val < 1 or n_val >= n:
        raise ConfigError(
            f"{where}: no 'val' file, and data.val_fraction={val_fraction} of {n} train records "
            f"gives {n_val} for validation; need 1..{n - 1}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass(frozen=True)
class Splits:
    """Per split, the file its records come from (`files`) and their indices in that file
    (`rows`; None: every record, in order)."""

    dataset: VIMHDataset
    files: dict[str, str]
    rows: dict[str, np.ndarray | None]
    val_carved: bool

    @classmethod
    def open(cls, data_dir: str | Path, val_fraction: float, split_seed: int) -> Splits:
        """Train and test must hold records: a missing or empty one is a DataError naming the
        file. An empty val file is treated as no val file (carved out of train, with a
        warning)."""
        data_dir = Path(data_dir)
        ds = VIMHDataset(data_dir)
        if "test" not in ds:
            raise DatasetNotFoundError(
                f"{data_dir}: no 'test' split file; a VIMH dataset needs train and test "
                f"(val is optional and is then carved out of train)"
            )
        for split in ("train", "test"):
            if len(ds[split]) == 0:
                raise DataError(
                    f"{ds[split].path}: the {split} split is empty (0 records); a VIMH dataset "
                    f"needs records in train and test. Regenerate it (e.g. python "
                    f"generate_vimh.py dataset.overwrite=true ...) or use another folder"
                )
        if "val" in ds and len(ds["val"]) > 0:
            files = {s: s for s in SPLITS}
            return cls(ds, files, dict.fromkeys(SPLITS), val_carved=False)
        if "val" in ds:
            log.warning(
                f"{ds['val'].path} is empty (0 records): treating the dataset as having no val file"
            )
        n = len(ds["train"])
        train, val = carve_val(n, val_fraction, split_seed, where=data_dir)
        log.info(
            f"{data_dir.name}: no 'val' file; validation = {len(val)} of {n} train records "
            f"(val_fraction={val_fraction}, split_seed={split_seed}), training on the other "
            f"{len(train)}; test untouched"
        )
        files = {"train": "train", "val": "train", "test": "test"}
        return cls(ds, files, {"train": train, "val": val, "test": None}, val_carved=True)

    def num_records(self, split: str) -> int:
        if split not in self.rows:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
        rows = self.rows[split]
        return len(self.dataset[self.files[split]]) if rows is None else len(rows)

    def inputs(self, split: str, audio: bool = False) -> np.ndarray:
        """(N, C, H, W) uint8 images or (N, 1, T) float32 waveforms of the file behind `split`
        (not yet subset by `rows`), as memory-mapped views."""
        if audio:
            return self.dataset.audio(self.files[split])[:, None, :]
        return self.dataset[self.files[split]].images

    def codes(self, split: str) -> np.ndarray:
        """The split's label codes (subset by `rows`)."""
        codes = self.dataset[self.files[split]].codes
        rows = self.rows[split]
        return codes if rows is None else codes[rows]
