"""Write VIMH datasets (layout 2.1) atomically.

Records are appended batch by batch into a temporary folder beside the target; the folder is
renamed into place only when every split holds its declared number of records and the JSON is
written. An existing dataset is never replaced unless `overwrite=True`. One writer at a time
works on a dataset (`dataset_lock`), so temporary folders that a killed writer left behind are
recognised, reported and removed by the next one. The finished folder gets the mode a plain
`mkdir` would (the umask), and a dataset reached through a symlink is written where the link
points, keeping the link.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from src.data.vimh.format import (
    CODE_FORMULAS,
    CODE_LEVELS,
    CURRENT_VERSION,
    FORMAT_NAME,
    INFO_FILENAME,
    METADATA_BYTES,
    SPLITS,
    ParamSpec,
    audio_filename,
    record_dtype,
)
from src.errors import DatasetExistsError
from src.utils.files import exclusive_lock, honour_umask
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def dataset_target(root: str | Path) -> Path:
    """Where a dataset's files go: `root`, or where it points when it is a symlink."""
    root = Path(root)
    return root.resolve() if root.is_symlink() else root


def dataset_lock(root: str | Path):
    """The lock every writer (and provisioning) of the dataset at `root` holds: a hidden file
    beside the dataset, `.{name}.lock`, that exists only while it is held."""
    target = dataset_target(root)
    return exclusive_lock(target.parent / f".{target.name}.lock", f"writing {target}")


def leftover_folders(target: Path) -> list[Path]:
    """Temporary and replaced folders of `target` that a killed writer left beside it."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(tmp-[^./]+|old-\d+|[a-z0-9_]{{8}})$")
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.iterdir() if pattern.match(p.name))


def code_description(params: Sequence[ParamSpec], rounding: str = "floor") -> dict:
    """`label_encoding`'s `code` (one string, as NSMT writes it, true for every parameter: a
    log-scale one is named with its own formula) and `code_by_parameter` (our addition: each
    varying parameter's formula)."""
    by_name = {p.name: p.code_formula(rounding) for p in params}
    log = [p.name for p in params if p.scale == "log"]
    linear = CODE_FORMULAS["linear"].format(rounding)
    if not log:
        code = linear
    else:
        parts = [
            f"log-scale parameters ({', '.join(log)}): {CODE_FORMULAS['log'].format(rounding)}"
        ]
        if len(log) < len(params):
            parts.insert(0, f"linear parameters: {linear}")
        code = ". ".join([*parts, "each parameter's: code_by_parameter"])
    return {"code": code, "code_by_parameter": by_name}


def build_info(
    *,
    dataset_name: str,
    height: int,
    width: int,
    channels: int,
    channel_labels: Sequence[str],
    params: Sequence[ParamSpec],
    fixed_parameters: Mapping[str, Mapping],
    split_sizes: Mapping[str, int],
    sample_rate: int,
    duration: float,
    synth_type: str,
    spectrogram_config: Mapping,
    extra: Mapping | None = None,
    rounding: str = "floor",
) -> dict:
    """The JSON metadata: every key NSMT writes, then our documented additions from `extra`.
    `rounding` is how codes were made from values (the generator floors, the converter rounds
    to the nearest code), stated in `label_encoding`."""
    mappings = {p.name: p.mapping() for p in params}
    for name, fixed in fixed_parameters.items():
        value = fixed["value"]
        mappings[name] = {
            "min": value,
            "max": value,
            "step": 0.0,
            "description": fixed.get("description", ""),
        }
    info = {
        "format": FORMAT_NAME,
        "version": CURRENT_VERSION,
        "dataset_name": dataset_name,
        "height": height,
        "width": width,
        "channels": channels,
        "channel_labels": list(channel_labels),
        "varying_parameters": len(params),
        "parameter_names": [p.name for p in params],
        "parameter_mappings": mappings,
        "fixed_parameters": {k: dict(v) for k, v in fixed_parameters.items()},
        "train_samples": int(split_sizes.get("train", 0)),
        "test_samples": int(split_sizes.get("test", 0)),
        "val_samples": int(split_sizes.get("val", 0)),
        "total_samples": int(sum(split_sizes.values())),
        "sample_rate": sample_rate,
        "duration": duration,
        "synth_type": synth_type,
        "image_size": f"{height}x{width}x{channels}",
        "spectrogram_config": dict(spectrogram_config),
        "label_encoding": {
            "format": "[height] [width] [channels] [spec_min] [spec_max] [N] "
            "[param1_id] [param1_val] [param2_id] [param2_val] ...",
            "metadata_bytes": METADATA_BYTES[CURRENT_VERSION],
            "byte_order": "little-endian",
            "pixel_order": "CHW",
            **code_description(params, rounding),
            "scale_factors": {
                "spec_min": "float32: dB value that maps to pixel 0",
                "spec_max": "float32: dB value that maps to pixel 255",
            },
            "N_range": [0, CODE_LEVELS],
            "param_id_range": [0, CODE_LEVELS],
            "param_val_range": [0, CODE_LEVELS],
        },
    }
    for key, value in (extra or {}).items():
        if key in info:
            raise ValueError(f"extra metadata key '{key}' would replace a format key")
        info[key] = value
    return info


def encode_records(
    pixels: np.ndarray,
    codes: np.ndarray,
    spec_min: float | np.ndarray,
    spec_max: float | np.ndarray,
) -> np.ndarray:
    """Records of the current layout for pixels (B, C, H, W) uint8 and codes (B, P) uint8: the
    one place record bytes are made, for the writer and for part files of parallel generation."""
    b, (c, h, w), n_params = len(pixels), pixels.shape[1:], codes.shape[1]
    rec = np.zeros(b, dtype=record_dtype(CURRENT_VERSION, h, w, c, n_params))
    rec["height"], rec["width"], rec["channels"] = h, w, c
    rec["spec_min"], rec["spec_max"] = spec_min, spec_max
    rec["n_params"] = n_params
    rec["params"][:, :, 0] = np.arange(n_params, dtype=np.uint8)
    rec["params"][:, :, 1] = codes
    rec["pixels"] = pixels
    return rec


class VIMHWriter:
    """Append records split by split, then `finish()` to put the dataset in place atomically."""

    def __init__(
        self,
        root: str | Path,
        *,
        height: int,
        width: int,
        channels: int,
        params: Sequence[ParamSpec],
        split_sizes: Mapping[str, int],
        audio_samples: int | None = None,
        overwrite: bool = False,
    ) -> None:
        self.root = Path(root)
        unknown = set(split_sizes) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; expected some of {SPLITS}")
        self.shape = (channels, height, width)
        self.params = tuple(params)
        self.split_sizes = {k: int(v) for k, v in split_sizes.items()}
        self.overwrite = overwrite
        self.dtype = record_dtype(CURRENT_VERSION, height, width, channels, len(self.params))
        self.target = dataset_target(self.root)
        self._lock = ExitStack()
        self._lock.enter_context(dataset_lock(self.root))
        try:
            self._check_target()
            self._remove_leftovers()
            self.target.parent.mkdir(parents=True, exist_ok=True)
            prefix = f".{self.target.name}.tmp-"
            self.tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=self.target.parent))
            honour_umask(self.tmp)
        except BaseException:
            self._lock.close()
            raise
        self.counts = dict.fromkeys(self.split_sizes, 0)
        self._files = {s: open(self.tmp / s, "wb") for s in self.split_sizes}  # noqa: SIM115
        self._audio = None
        if audio_samples is not None:
            self._audio = {
                s: np.lib.format.open_memmap(
                    self.tmp / audio_filename(s),
                    mode="w+",
                    dtype=np.float32,
                    shape=(n, audio_samples),
                )
                for s, n in self.split_sizes.items()
            }
        self._done = False

    def _check_target(self) -> None:
        if self.root.exists() and not self.overwrite:
            raise DatasetExistsError(
                f"{self.root} already exists; refusing to overwrite it (pass overwrite=True, "
                f"or dataset.overwrite=true on the command line, to replace it)"
            )
        if self.target.exists() and not self.target.is_dir():
            raise DatasetExistsError(f"{self.target} exists and is not a folder; not replacing it")

    def _remove_leftovers(self) -> None:
        """Under the lock no other writer of this dataset runs: what it finds is stale."""
        stale = leftover_folders(self.target)
        if stale:
            log.warning(
                f"Removing {len(stale)} folder(s) left beside {self.target} by an interrupted "
                f"generation: {', '.join(p.name for p in stale)}"
            )
            for p in stale:
                if p.is_symlink():  # a link an older writer renamed aside: only the link goes
                    p.unlink()
                else:
                    shutil.rmtree(p, ignore_errors=True)

    def __enter__(self) -> VIMHWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.abort()

    def write(
        self,
        split: str,
        pixels: np.ndarray,
        codes: np.ndarray,
        spec_min: float | np.ndarray,
        spec_max: float | np.ndarray,
        audio: np.ndarray | None = None,
    ) -> None:
        """Append a batch: pixels (B, C, H, W) uint8, codes (B, P) uint8, optional audio (B, T)."""
        if split not in self._files:
            raise KeyError(f"split '{split}' was not declared; declared: {list(self._files)}")
        pixels = np.asarray(pixels)
        codes = np.asarray(codes)
        b = len(pixels)
        if pixels.dtype != np.uint8 or pixels.shape[1:] != self.shape:
            raise ValueError(
                f"pixels must be uint8 of shape (B, {', '.join(map(str, self.shape))}), "
                f"got {pixels.dtype} {pixels.shape}"
            )
        if codes.dtype != np.uint8 or codes.shape != (b, len(self.params)):
            raise ValueError(f"codes must be uint8 ({b}, {len(self.params)}), got {codes.shape}")
        if self.counts[split] + b > self.split_sizes[split]:
            raise ValueError(
                f"split '{split}' declared {self.split_sizes[split]} records; this batch would "
                f"make {self.counts[split] + b}"
            )
        encode_records(pixels, codes, spec_min, spec_max).tofile(self._files[split])
        if self._audio is not None:
            if audio is None:
                raise ValueError("this writer stores audio; pass audio with every batch")
            start = self.counts[split]
            self._audio[split][start : start + b] = audio
        self.counts[split] += b

    def append_part(self, split: str, records: Path, audio: Path | None = None) -> int:
        """Append a part file of encoded records (and its raw float32 audio) made by
        `encode_records`, copying bytes without decoding; returns the records appended."""
        if split not in self._files:
            raise KeyError(f"split '{split}' was not declared; declared: {list(self._files)}")
        size = records.stat().st_size
        b = size // self.dtype.itemsize
        if size % self.dtype.itemsize:
            raise ValueError(
                f"{records}: {size} bytes is not a whole number of {self.dtype.itemsize}-byte "
                f"records"
            )
        if self.counts[split] + b > self.split_sizes[split]:
            raise ValueError(
                f"split '{split}' declared {self.split_sizes[split]} records; {records} would "
                f"make {self.counts[split] + b}"
            )
        if (self._audio is None) != (audio is None):
            raise ValueError(f"{records}: audio parts must be given exactly when audio is stored")
        with open(records, "rb") as f:
            shutil.copyfileobj(f, self._files[split], 1 << 20)
        if audio is not None:
            target = self._audio[split]
            data = np.fromfile(audio, dtype=np.float32)
            if data.size != b * target.shape[1]:
                raise ValueError(f"{audio}: expected {b} x {target.shape[1]} float32 samples")
            start = self.counts[split]
            target[start : start + b] = data.reshape(b, -1)
        self.counts[split] += b
        return b

    def add_file(self, name: str, text: str) -> None:
        """A side file of the dataset (e.g. where each record came from), written with the
        records and put in place with them; never one of the format's own names."""
        own = {INFO_FILENAME, *SPLITS, *(audio_filename(s) for s in SPLITS)}
        if name in own or Path(name).name != name or name.startswith("."):
            raise ValueError(f"{name!r} is not a valid side-file name (reserved or a path)")
        (self.tmp / name).write_text(text)

    def finish(self, info: Mapping) -> Path:
        """Check counts, write the JSON, and rename the finished folder into place."""
        short = {s: (self.counts[s], n) for s, n in self.split_sizes.items() if self.counts[s] != n}
        if short:
            raise ValueError(f"splits not complete (written, declared): {short}")
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        if self._audio is not None:
            for a in self._audio.values():
                a.flush()
            self._audio = None
        (self.tmp / INFO_FILENAME).write_text(json.dumps(info, indent=2) + "\n")
        old = None
        if self.target.exists():
            if not self.overwrite:
                raise DatasetExistsError(f"{self.root} appeared while writing; not overwriting it")
            old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            self.target.rename(old)
        os.rename(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        self._lock.close()
        return self.root

    def abort(self) -> None:
        for f in self._files.values():
            f.close()
        self._audio = None
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._done = True
        self._lock.close()
