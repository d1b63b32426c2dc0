"""Read VIMH datasets: memory-mapped, validated vectorized, never written to.

Opening a split maps its file with a packed numpy dtype, so a million records cost one
`np.memmap` and a few vectorized comparisons, not a Python loop.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path

import numpy as np

from src.data.vimh.classes import parse_class_names
from src.data.vimh.format import (
    FORMAT_NAME,
    INFO_FILENAME,
    LAYOUTS,
    SPLITS,
    ParamSpec,
    VIMHFormatError,
    audio_filename,
    header_bytes,
    parse_folder_name,
    record_bytes,
    record_dtype,
)
from src.errors import DatasetNotFoundError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)
_warned: set[tuple[str, str]] = set()


def _warn_once(path: Path, message: str) -> None:
    """A dataset is opened several times per run; say each thing about it once."""
    key = (str(path.resolve()), message)
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


@dataclass(frozen=True)
class VIMHInfo:
    """The validated contents of `vimh_dataset_info.json`."""

    path: Path
    height: int
    width: int
    channels: int
    params: tuple[ParamSpec, ...]  # varying parameters, in `parameter_names` order (= param id)
    fixed_parameters: dict
    version: str | None
    raw: dict
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)  # nominal heads' names

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W), the order pixels are stored in."""
        return (self.channels, self.height, self.width)


def _require(info: dict, key: str, kind: type | tuple, path: Path):
    if key not in info:
        raise VIMHFormatError(f"{path}: missing key '{key}'")
    value = info[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise VIMHFormatError(
            f"{path}: key '{key}' must be {names}, got {type(value).__name__} {value!r}"
        )
    return value


def read_info(path: str | Path) -> VIMHInfo:
    """Load and validate the dataset JSON. `path` is the dataset folder or the JSON file."""
    path = Path(path)
    if path.is_dir():
        path = path / INFO_FILENAME
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: VIMH metadata file not found")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise VIMHFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(info, dict):
        raise VIMHFormatError(f"{path}: expected a JSON object at the top level")

    fmt = info.get("format", FORMAT_NAME)
    if fmt != FORMAT_NAME:
        raise VIMHFormatError(f"{path}: key 'format' must be '{FORMAT_NAME}', got {fmt!r}")
    dims = {}
    for key in ("height", "width", "channels"):
        value = _require(info, key, int, path)
        if not 1 <= value <= 65535:
            raise VIMHFormatError(f"{path}: key '{key}' must be in 1..65535, got {value}")
        dims[key] = value
    names = _require(info, "parameter_names", list, path)
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise VIMHFormatError(f"{path}: key 'parameter_names' must list distinct strings")
    if len(names) > 255:
        raise VIMHFormatError(f"{path}: at most 255 parameters fit in a record, got {len(names)}")
    if "varying_parameters" in info and info["varying_parameters"] != len(names):
        raise VIMHFormatError(
            f"{path}: key 'varying_parameters' is {info['varying_parameters']} but "
            f"'parameter_names' lists {len(names)}"
        )
    mappings = _require(info, "parameter_mappings", dict, path)
    params = []
    for name in names:
        m = mappings.get(name)
        if not isinstance(m, dict):
            raise VIMHFormatError(f"{path}: 'parameter_mappings' has no entry for '{name}'")
        for key in ("min", "max", "step"):
            v = m.get(key)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise VIMHFormatError(
                    f"{path}: parameter_mappings['{name}']['{key}'] must be a finite number, "
                    f"got {v!r}"
                )
        try:
            spec = ParamSpec.from_mapping(name, m)
        except ValueError as e:
            raise VIMHFormatError(f"{path}: parameter_mappings['{name}']: {e}") from e
        if spec.fixed:
            raise VIMHFormatError(
                f"{path}: parameter '{name}' is listed as varying but has min == max"
            )
        if not spec.step_divides:
            _warn_once(
                path,
                f"{path}: parameter '{name}': step {spec.step} does not divide [{spec.min}, "
                f"{spec.max}]; counting it as NSMT does: {spec.num_classes} classes, the last "
                f"one holding values up to max",
            )
        params.append(spec)
    version = info.get("version")
    if version is not None:
        version = str(version)
    return VIMHInfo(
        path=path,
        params=tuple(params),
        fixed_parameters=dict(info.get("fixed_parameters", {}) or {}),
        version=version,
        raw=info,
        class_names=parse_class_names(info, params, path),
        **dims,
    )


def open_pixels(path: Path, dtype: np.dtype) -> np.ndarray:
    """(N, C, H, W) uint8 pixels of a split file, mapped read-only (zero-copy strided view)."""
    return np.memmap(path, dtype=dtype, mode="r")["pixels"]


def open_audio(path: Path, channel_axis: bool = False) -> np.ndarray:
    """(N, T) float32 waveforms of an audio file, mapped read-only; (N, 1, T) with
    `channel_axis`, the layout models take."""
    audio = np.load(path, mmap_mode="r")
    return audio[:, None, :] if channel_axis else audio


class VIMHSplit:
    """One split file, memory-mapped. Images are a zero-copy strided view of the records."""

    def __init__(self, path: Path, info: VIMHInfo) -> None:
        self.path = path
        self.info = info
        self.version = self._detect_layout()
        n_params = len(info.params)
        self.dtype = record_dtype(self.version, info.height, info.width, info.channels, n_params)
        size = path.stat().st_size
        if size == 0:
            self.records = np.zeros(0, dtype=self.dtype)
        else:
            self.records = np.memmap(path, dtype=self.dtype, mode="r")
        self._validate_headers()

    def __len__(self) -> int:
        return len(self.records)

    def _detect_layout(self) -> str:
        """Decide 2.0 vs 2.1 from the bytes (size and first/last headers), not from a guess."""
        info, path = self.info, self.path
        n_params = len(info.params)
        size = path.stat().st_size
        per = {
            v: record_bytes(v, info.height, info.width, info.channels, n_params) for v in LAYOUTS
        }
        if size == 0:
            return info.version if info.version in LAYOUTS else "2.1"
        with open(path, "rb") as f:
            fits = [v for v in LAYOUTS if size % per[v] == 0 and self._header_ok(f, v, 0)]
            if len(fits) == 2:
                # The last header usually tells them apart; a bad record found later gets its
                # own message from the vectorized check.
                last = [v for v in fits if self._header_ok(f, v, size - per[v])]
                fits = last or fits
        if not fits:
            expect = ", ".join(
                f"{per[v]} bytes (layout {v}: {header_bytes(v, n_params)} header + "
                f"{info.height}x{info.width}x{info.channels} pixels; file has "
                f"{size // per[v]} whole records and {size % per[v]} bytes left over)"
                for v in LAYOUTS
            )
            raise VIMHFormatError(
                f"{path}: size {size} bytes matches no record layout for "
                f"{info.height}x{info.width}x{info.channels} with {n_params} parameters "
                f"(truncated, or dims/parameters disagree with {info.path.name}). "
                f"Expected records of {expect}"
            )
        if len(fits) == 2:
            # Both layouts parse: only the JSON can tell; refuse rather than guess.
            if info.version not in LAYOUTS:
                raise VIMHFormatError(
                    f"{path}: the bytes fit both layouts 2.0 and 2.1 and {info.path.name} has no "
                    f'\'version\' key to decide; add "version": "2.0" or "2.1"'
                )
            return info.version
        layout = fits[0]
        if info.version is not None and info.version != layout:
            log.warning(
                f"{path}: records are in layout {layout} although {info.path.name} says version "
                f"{info.version}; reading them as {layout}"
            )
        return layout

    def _header_ok(self, f, version: str, offset: int) -> bool:
        info = self.info
        f.seek(offset)
        head = f.read(header_bytes(version, len(info.params)))
        h, w, c = np.frombuffer(head[:6], dtype="<u2")
        n = head[6 if version == "2.0" else 14]
        return (h, w, c) == (info.height, info.width, info.channels) and n == len(info.params)

    def _validate_headers(self) -> None:
        """Check every record's dims, N and ids at once; name the first bad record."""
        rec, info, path = self.records, self.info, self.path
        if len(rec) == 0:
            return
        n_params = len(info.params)
        for key, want in (
            ("height", info.height),
            ("width", info.width),
            ("channels", info.channels),
            ("n_params", n_params),
        ):
            bad = np.flatnonzero(rec[key] != want)
            if bad.size:
                i = int(bad[0])
                raise VIMHFormatError(
                    f"{path}: record {i} has {key}={int(rec[key][i])}, expected {want} "
                    f"(from {info.path.name}); {bad.size} records disagree"
                )
        if n_params == 0:
            return
        ids = np.asarray(rec["params"][:, :, 0])
        bad = np.flatnonzero((ids >= n_params).any(axis=1))
        if bad.size:
            i = int(bad[0])
            raise VIMHFormatError(
                f"{path}: record {i} has parameter ids {ids[i].tolist()}, expected ids in "
                f"0..{n_params - 1} (indexes into parameter_names {info.param_names})"
            )
        if not (ids == np.arange(n_params)).all():
            # Ids in another order are allowed; duplicates (a missing parameter) are not.
            seen = np.zeros((len(ids), n_params), dtype=bool)
            np.put_along_axis(seen, ids.astype(np.int64), True, axis=1)
            bad = np.flatnonzero(~seen.all(axis=1))
            if bad.size:
                i = int(bad[0])
                raise VIMHFormatError(
                    f"{path}: record {i} repeats a parameter id ({ids[i].tolist()}); each of "
                    f"0..{n_params - 1} must appear once"
                )
        if self.version == "2.1":
            lo = np.asarray(rec["spec_min"])
            hi = np.asarray(rec["spec_max"])
            bad = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))
            if bad.size:
                raise VIMHFormatError(
                    f"{path}: record {int(bad[0])} has a non-finite spec_min/spec_max"
                )

    @property
    def images(self) -> np.ndarray:
        """(N, C, H, W) uint8, a strided view into the mapped file (no copy)."""
        return self.records["pixels"]

    def pixel_source(self) -> partial:
        """A picklable callable that maps this split's pixels again (for loader workers)."""
        return partial(open_pixels, self.path, self.dtype)

    @cached_property
    def codes(self) -> np.ndarray:
        """(N, P) uint8 label codes, column p = parameter id p, whatever order records use."""
        pairs = np.asarray(self.records["params"])
        ids, vals = pairs[..., 0].astype(np.int64), pairs[..., 1]
        if len(ids) == 0 or (ids == np.arange(ids.shape[1])).all():
            return np.ascontiguousarray(vals)
        out = np.empty_like(vals)
        np.put_along_axis(out, ids, vals, axis=1)
        return out

    def values(self) -> np.ndarray:
        """(N, P) float64 decoded parameter values in natural units."""
        return np.stack(
            [p.decode(self.codes[:, i]) for i, p in enumerate(self.info.params)], axis=1
        ).reshape(len(self), len(self.info.params))

    def classes(self) -> np.ndarray:
        """(N, P) int64 class indices."""
        v = self.values()
        return np.stack(
            [p.class_index(v[:, i]) for i, p in enumerate(self.info.params)], axis=1
        ).reshape(len(self), len(self.info.params))

    @property
    def spec_range(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-record (spec_min, spec_max) dB values for layout 2.1; None for 2.0."""
        if self.version != "2.1":
            return None
        return np.asarray(self.records["spec_min"]), np.asarray(self.records["spec_max"])


class VIMHDataset:
    """A VIMH dataset folder: its metadata and its split files, checked against each other."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"{self.root}: VIMH dataset folder not found")
        self.info = read_info(self.root)
        self.splits = {}
        for name in SPLITS:
            path = self.root / name
            if path.is_file():
                self.splits[name] = VIMHSplit(path, self.info)
        if "train" not in self.splits:
            raise VIMHFormatError(f"{self.root}: no 'train' split file")
        # The splits first, the folder name last: a missing or short split is the cause of a
        # sample count in the name that does not add up, so it gets the message.
        self._check_counts()
        self._check_folder_name()

    def __getitem__(self, split: str) -> VIMHSplit:
        if split not in self.splits:
            raise KeyError(f"{self.root}: no '{split}' split; available: {sorted(self.splits)}")
        return self.splits[split]

    def __contains__(self, split: str) -> bool:
        return split in self.splits

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        return self.info.params

    @property
    def audio_available(self) -> bool:
        return all((self.root / audio_filename(s)).is_file() for s in self.splits)

    def audio(self, split: str) -> np.ndarray:
        """(N, T) float32 waveforms of a split, memory-mapped, when the dataset stores them."""
        path = self.root / audio_filename(split)
        if not path.is_file():
            raise DatasetNotFoundError(
                f"{path}: this dataset stores no audio for split '{split}' (generate it with "
                f"dataset.store_audio=true)"
            )
        audio = open_audio(path)
        if audio.ndim != 2 or len(audio) != len(self[split]) or audio.shape[1] < 1:
            raise VIMHFormatError(
                f"{path}: expected shape ({len(self[split])}, n_samples), got {audio.shape}"
            )
        if audio.dtype != np.float32:
            raise VIMHFormatError(f"{path}: expected float32 waveforms, got {audio.dtype}")
        declared = (self.info.raw.get("audio") or {}).get("n_samples")
        if declared is not None and int(declared) != audio.shape[1]:
            raise VIMHFormatError(
                f"{path}: holds {audio.shape[1]} samples per record but {self.info.path.name} "
                f"says audio.n_samples = {declared}"
            )
        return audio

    def audio_source(self, split: str) -> partial:
        """A picklable callable mapping a split's checked waveforms as (N, 1, T) (for workers)."""
        self.audio(split)
        return partial(open_audio, self.root / audio_filename(split), channel_axis=True)

    def _check_counts(self) -> None:
        raw = self.info.raw
        for name in SPLITS:
            declared = raw.get(f"{name}_samples")
            if name not in self.splits and isinstance(declared, int) and declared > 0:
                raise DatasetNotFoundError(
                    f"{self.root / name}: no such split file, but {self.info.path.name} says "
                    f"{name}_samples = {declared}"
                )
        for name, split in self.splits.items():
            key = f"{name}_samples"
            if key in raw and raw[key] != len(split):
                carve = (
                    " (an empty val file stands for no val file only where the JSON counts 0)"
                    if name == "val" and len(split) == 0
                    else ""
                )
                raise VIMHFormatError(
                    f"{split.path}: holds {len(split)} records but {self.info.path.name} says "
                    f"{key} = {raw[key]}: the folder is damaged or partly copied{carve}; copy "
                    f"or regenerate it whole"
                )

    def _check_folder_name(self) -> None:
        parsed = parse_folder_name(self.root.name)
        if parsed is None:
            if self.root.name.startswith("vimh-"):
                log.warning(f"{self.root}: folder name does not follow the VIMH naming pattern")
            return
        info = self.info
        checks = [
            ("height", parsed.height, info.height),
            ("width", parsed.width, info.width),
            ("parameter count", parsed.params, len(info.params)),
            ("dataset samples", parsed.samples, sum(len(s) for s in self.splits.values())),
        ]
        if parsed.channels is not None:
            checks.append(("channels", parsed.channels, info.channels))
        if "sample_rate" in info.raw:
            checks.append(("sample rate", parsed.sample_rate, int(info.raw["sample_rate"])))
        held = ", ".join(
            [f"{n} {len(self.splits[n])}" for n in SPLITS if n in self.splits]
            + [f"no {n} file" for n in SPLITS if n not in self.splits]
        )
        for what, in_name, actual in checks:
            if in_name != actual:
                detail = f" ({held})" if what == "dataset samples" else ""
                raise VIMHFormatError(
                    f"{self.root}: folder name says {what} {in_name} but the dataset has "
                    f"{actual}{detail}"
                )
