"""Part files of a generation in progress: the fixed batches, who renders which, and joining them.

A dataset is made of fixed batches: `dataset.batch_size` (part of the recipe) cuts each split
into batches, and batch b of a split holds records b*B .. b*B+B-1, with labels sliced from the
split's one label draw and audio randomness seeded by (seed, split, b). A batch's bytes
therefore do not depend on which process renders it, so one process, N workers and K shards
make the same dataset. Each batch is written as its own part file in a staging folder beside
the dataset, `.parts-<dataset name>/`, and renamed into place when complete: a part that exists
is whole. A run renders only the parts of its shard that are missing (so an interrupted run
resumes), and the run that finds every part present joins them, in order, through the atomic
writer, then removes the folder. The folder's manifest names the recipe its parts belong to;
parts of another config or seed are refused, never mixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.data.vimh import VIMHWriter
from src.errors import ConfigError, DataError
from src.utils.files import try_lock

MANIFEST = "manifest.json"
LOCK = "assemble.lock"


@dataclass(frozen=True)
class Unit:
    """One batch of one split: records `start .. start + size - 1` of the split."""

    split: str
    index: int
    start: int
    size: int

    @property
    def stem(self) -> str:
        return f"{self.split}-{self.index:06d}"


def plan_units(sizes: Mapping[str, int], batch_size: int) -> list[Unit]:
    """Every batch of the dataset, split by split in file order."""
    if batch_size < 1:
        raise ConfigError(f"dataset.batch_size must be >= 1, got {batch_size}")
    return [
        Unit(split, b, start, min(batch_size, n - start))
        for split, n in sizes.items()
        for b, start in enumerate(range(0, n, batch_size))
    ]


def shard_units(units: Sequence[Unit], num_shards: int, shard: int | None) -> list[Unit]:
    """Shard `shard` of `num_shards`: a contiguous run of batches, sizes within one batch of
    each other (all batches when `shard` is None)."""
    if num_shards < 1:
        raise ConfigError(f"dataset.num_shards must be >= 1, got {num_shards}")
    if shard is None:
        return list(units)
    if not 0 <= shard < num_shards:
        raise ConfigError(f"dataset.shard must be in 0..{num_shards - 1}, got {shard}")
    n = len(units)
    return list(units[shard * n // num_shards : (shard + 1) * n // num_shards])


def owner(unit_pos: int, n_units: int, num_shards: int) -> int:
    """The shard whose run of batches holds position `unit_pos` (inverse of shard_units: the
    last shard s with s * n_units // num_shards <= unit_pos)."""
    return -(-(unit_pos + 1) * num_shards // n_units) - 1


class PartStore:
    """The staging folder of one dataset's parts, tied to one recipe by its manifest."""

    def __init__(self, target: str | Path, manifest: Mapping) -> None:
        self.target = Path(target)
        self.dir = self.target.parent / f".parts-{self.target.name}"
        self.manifest = json.loads(json.dumps(dict(manifest)))  # plain JSON types
        self.audio = manifest.get("audio_samples") is not None

    def records_path(self, unit: Unit) -> Path:
        return self.dir / f"{unit.stem}.rec"

    def audio_path(self, unit: Unit) -> Path:
        return self.dir / f"{unit.stem}.f32"

    # --- the manifest --------------------------------------------------------------------------
    def open(self) -> None:
        """Create the folder and its manifest, or check that an existing one is this recipe's."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / MANIFEST
        if not path.exists() and not any(self.dir.glob("*.rec")):
            tmp = self.dir / f".{MANIFEST}.{uuid.uuid4().hex}"
            tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
            try:
                os.link(tmp, path)  # atomic create-if-absent: concurrent shards agree on one
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        self.check()

    def check(self) -> None:
        """Refuse a folder whose parts were made by another recipe (config or seed)."""
        path = self.dir / MANIFEST
        try:
            found = json.loads(path.read_text())
        except FileNotFoundError:
            if self.dir.exists() and any(self.dir.glob("*.rec")):
                raise DataError(
                    f"{self.dir} holds parts but no {MANIFEST}, so nothing says which recipe "
                    f"made them; remove the folder to start over"
                ) from None
            raise
        except ValueError as e:
            raise DataError(f"{path} is not valid JSON ({e}); remove {self.dir}") from e
        diff = {k: (found.get(k), v) for k, v in self.manifest.items() if found.get(k) != v} | {
            k: (v, None) for k, v in found.items() if k not in self.manifest
        }
        if diff:
            said = "; ".join(f"{k}: parts {a!r}, this run {b!r}" for k, (a, b) in diff.items())
            raise DataError(
                f"{self.dir}: these parts were made by another recipe ({said}). Parts of "
                f"different configs or seeds are never joined: rerun with the config that made "
                f"them, or remove {self.dir} to start over"
            )

    # --- parts ---------------------------------------------------------------------------------
    def done(self, unit: Unit) -> bool:
        return self.records_path(unit).exists() and (
            not self.audio or self.audio_path(unit).exists()
        )

    def missing(self, units: Sequence[Unit]) -> list[Unit]:
        present = {p.name for p in self.dir.iterdir()} if self.dir.exists() else set()
        need = (".rec", ".f32") if self.audio else (".rec",)
        return [u for u in units if any(f"{u.stem}{ext}" not in present for ext in need)]

    def write(self, unit: Unit, records: np.ndarray, audio: np.ndarray | None = None) -> None:
        """Write one part: temporary files, synced, then renamed (records last, so a records
        file that exists means a finished part)."""
        if len(records) != unit.size:
            raise ValueError(f"part {unit.stem}: {len(records)} records, expected {unit.size}")
        try:
            if audio is not None:
                _write_atomic(self.audio_path(unit), np.ascontiguousarray(audio, dtype=np.float32))
            _write_atomic(self.records_path(unit), records)
        except FileNotFoundError as e:
            if self.dir.is_dir():
                raise
            raise DataError(
                f"{self.dir} was removed while part {unit.stem} was written: another process "
                f"joined these parts into {self.target} (or removed them); see whether it is "
                f"complete before generating again"
            ) from e

    # --- joining -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[bool | None]:
        """Whether this process may assemble: one at a time, released even if it dies. False
        when another holds it or the parts are gone (another run has just assembled them);
        None when the file system has no file locks."""
        with try_lock(self.dir / LOCK) as got:
            yield got

    def assemble(self, writer: VIMHWriter, units: Sequence[Unit]) -> None:
        """Append every part, in order, to `writer` (which checks sizes and counts)."""
        for u in units:
            got = writer.append_part(
                u.split, self.records_path(u), self.audio_path(u) if self.audio else None
            )
            if got != u.size:
                raise DataError(f"{self.records_path(u)}: {got} records, expected {u.size}")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _write_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            array.tofile(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
