"""The VIMH (Variable Image Multi-Head) binary format: record layouts, labels, folder names.

See docs/vimh.md for the full specification. Everything here is pure description: the reader
and the writer build on it so that they cannot disagree about a byte.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from src.errors import DataError

INFO_FILENAME = "vimh_dataset_info.json"
SPLITS = ("train", "val", "test")
FORMAT_NAME = "VIMH"
CURRENT_VERSION = "2.1"
LAYOUTS = ("2.1", "2.0")
CODE_LEVELS = 255  # 8-bit label codes run 0..255
METADATA_BYTES = {"2.1": 14, "2.0": 6}  # bytes before the N byte
SCALES = ("linear", "log")
SPEC_KEYS = ("min", "max", "step", "scale", "description", "unit")
ROUNDINGS = ("floor", "round")
# The code of a value v and the value of a code q along each axis (docs/vimh.md, Labels); {0}
# is the rounding. The linear one is NSMT's, word for word.
CODE_FORMULAS = {
    "linear": "q = {0}(255 * (v - min) / (max - min)); v = min + q / 255 * (max - min)",
    "log": "q = {0}(255 * log2(v / min) / log2(max / min)); "
    "v = min * 2 ** (q / 255 * log2(max / min))",
}


def audio_filename(split: str) -> str:
    """The file holding a split's float32 waveforms (N, T), beside the split's records."""
    return f"{split}_audio.npy"


def audio_entry(stored: bool, splits, n_samples: int) -> dict:
    """The JSON `audio` entry: whether waveforms are stored, their file per split, length."""
    files = {s: audio_filename(s) for s in splits} if stored else {}
    return {"stored": stored, "files": files, "n_samples": n_samples, "dtype": "float32"}


class VIMHFormatError(DataError, ValueError):
    """A dataset on disk does not follow the format; the message names file, field, expectation."""


@dataclass(frozen=True)
class ParamSpec:
    """One labelled parameter: its range, class grid and 8-bit code.

    `min`, `max` are in natural units (as in the JSON `parameter_mappings`). Everything else is
    measured along the parameter's axis: its `position` is `v - min` for `scale: linear` (the
    NSMT convention) and `log2(v / min)` (octaves above min) for `scale: log`, our addition for
    quantities that span ratios (times, rates, frequencies). `step` is the class width along
    that axis (natural units, or octaves). With `extent = position(max)`:

    - code `q = floor(255 * position(v) / extent)`, decoded as the value at `q / 255 * extent`;
    - `K = round(extent / step) + 1` classes, class `k = clamp(round(position(v) / step), 0,
      K - 1)`, whose value is the one at `k * step`.

    A step that does not divide the range is accepted and counted as NSMT does (the last class
    is then narrower); our generator refuses such parameters (`check_step_divides`).
    """

    name: str
    min: float
    max: float
    step: float
    scale: str = "linear"
    description: str = ""
    unit: str = ""

    def __post_init__(self) -> None:
        where = f"parameter '{self.name}'"
        if not all(math.isfinite(x) for x in (self.min, self.max, self.step)):
            raise ValueError(f"{where}: min, max and step must be finite numbers")
        if self.scale not in SCALES:
            raise ValueError(f"{where}: scale must be one of {SCALES}, got {self.scale!r}")
        if self.max < self.min:
            raise ValueError(f"{where}: min ({self.min}) is above max ({self.max})")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"{where}: log scale needs min > 0, got {self.min}")
        if not self.fixed and self.step <= 0:
            raise ValueError(f"{where}: a varying parameter needs step > 0, got {self.step}")

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    @property
    def span(self) -> float:
        return self.max - self.min

    @property
    def extent(self) -> float:
        """The range along the axis: max - min, or log2(max / min) octaves."""
        return math.log2(self.max / self.min) if self.scale == "log" else self.span

    @property
    def num_classes(self) -> int:
        return 1 if self.fixed else round(self.extent / self.step) + 1

    @property
    def step_divides(self) -> bool:
        n_steps = self.extent / self.step
        return abs(n_steps - round(n_steps)) <= 1e-6 * max(1.0, n_steps)

    def check_step_divides(self) -> None:
        """Our datasets use steps that divide the range (every class as wide as the others)."""
        if not self.fixed and not self.step_divides:
            unit = " octaves" if self.scale == "log" else ""
            raise ValueError(
                f"parameter '{self.name}': step {self.step}{unit} does not divide the range "
                f"[{self.min}, {self.max}] ({self.scale} axis: extent / step = "
                f"{self.extent / self.step:.6g}, expected a whole number)"
            )

    # --- the axis --------------------------------------------------------------------------
    def position(self, values: np.ndarray) -> np.ndarray:
        """Natural values -> position along the axis (0 at min, `extent` at max)."""
        v = np.asarray(values, dtype=np.float64)
        if self.scale == "log":
            return np.log2(v / self.min)
        return v - self.min

    def at_position(self, position: np.ndarray) -> np.ndarray:
        """Position along the axis -> natural values (float64)."""
        x = np.asarray(position, dtype=np.float64)
        if self.scale == "log":
            return self.min * np.exp2(x)
        return self.min + x

    # --- 8-bit codes -------------------------------------------------------------------------
    def encode(self, values: np.ndarray) -> np.ndarray:
        """Natural values -> uint8 codes (floor, as the format specifies)."""
        # The tiny epsilon keeps values computed as exact grid points from flooring one code
        # low because of binary rounding (e.g. 255 * 0.7 / 0.7 = 254.99999...).
        q = np.floor(CODE_LEVELS * self.position(values) / self.extent + 1e-9)
        return np.clip(q, 0, CODE_LEVELS).astype(np.uint8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """uint8 codes -> natural values (float64)."""
        q = np.asarray(codes, dtype=np.float64)
        return self.at_position(q / CODE_LEVELS * self.extent)

    def class_code(self, classes: np.ndarray) -> np.ndarray:
        """Class indices -> codes, in exact integer arithmetic (grid sampling uses this)."""
        k = np.asarray(classes, dtype=np.int64)
        if self.num_classes < 2:  # a fixed parameter has one class, code 0
            return np.zeros_like(k, dtype=np.uint8)
        return (CODE_LEVELS * k // (self.num_classes - 1)).astype(np.uint8)

    def class_index(self, values: np.ndarray) -> np.ndarray:
        """Natural values -> class indices 0..K-1."""
        k = np.rint(self.position(values) / self.step).astype(np.int64)
        return np.clip(k, 0, self.num_classes - 1)

    def class_value(self, classes: np.ndarray) -> np.ndarray:
        """Class indices -> the grid value of each class."""
        return self.at_position(np.asarray(classes, dtype=np.float64) * self.step)

    def check_codes_exact(self) -> None:
        """Every class must survive code -> value -> class, or grid labels would be wrong."""
        k = np.arange(self.num_classes)
        back = self.class_index(self.decode(self.class_code(k)))
        bad = np.flatnonzero(back != k)
        if bad.size:
            raise ValueError(
                f"parameter '{self.name}': {self.num_classes} classes are too many for 8-bit "
                f"codes (class {bad[0]} would decode as class {back[bad[0]]}); use at most 128 "
                f"classes, or a class count K whose K - 1 divides 255"
            )

    def code_formula(self, rounding: str = "floor") -> str:
        """This parameter's code and decoding rule as the JSON's `label_encoding` states it
        (`rounding`: "floor", as the generator writes, or "round", the converter's nearest code)."""
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        return CODE_FORMULAS[self.scale].format(rounding)

    # --- unit interval, for regression targets ---------------------------------------------
    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Natural values -> [0, 1] along the axis (linear, or logarithmic for `scale: log`)."""
        return self.position(values) / self.extent

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        return self.at_position(np.asarray(u, dtype=np.float64) * self.extent)

    def mapping(self) -> dict:
        """The JSON `parameter_mappings` entry (NSMT keys plus our `scale` and `unit`)."""
        return {key: getattr(self, key) for key in SPEC_KEYS}

    @classmethod
    def from_mapping(cls, name: str, m: dict) -> ParamSpec:
        return cls(
            name=name,
            min=float(m["min"]),
            max=float(m["max"]),
            step=float(m.get("step", 0.0)),
            scale=str(m.get("scale", "linear")),
            description=str(m.get("description", "")),
            unit=str(m.get("unit", "")),
        )

    def to_dict(self) -> dict:
        """The plain form that travels from data to model and into checkpoints: name + mapping."""
        return {"name": self.name, **self.mapping()}

    @classmethod
    def from_dict(cls, d: dict) -> ParamSpec:
        """Inverse of `to_dict`; keys other than the name and `SPEC_KEYS` are an error."""
        if not isinstance(d, dict) or "name" not in d:
            raise ValueError(f"a parameter spec must be a mapping with a 'name', got {d!r}")
        unknown = set(d) - {"name", *SPEC_KEYS}
        if unknown:
            raise ValueError(f"parameter '{d['name']}': unknown keys {sorted(unknown)}")
        return cls.from_mapping(str(d["name"]), d)


def header_bytes(version: str, n_params: int) -> int:
    """Bytes before the pixels: dims, [spec_min, spec_max], N, N x (id, value)."""
    return METADATA_BYTES[version] + 1 + 2 * n_params


def record_bytes(version: str, height: int, width: int, channels: int, n_params: int) -> int:
    return header_bytes(version, n_params) + height * width * channels


def record_dtype(version: str, height: int, width: int, channels: int, n_params: int) -> np.dtype:
    """A packed little-endian numpy dtype for one record, so files map without parsing."""
    fields: list[tuple] = [("height", "<u2"), ("width", "<u2"), ("channels", "<u2")]
    if version == "2.1":
        fields += [("spec_min", "<f4"), ("spec_max", "<f4")]
    elif version != "2.0":
        raise ValueError(f"unknown VIMH layout version {version!r}; expected one of {LAYOUTS}")
    fields += [
        ("n_params", "u1"),
        ("params", "u1", (n_params, 2)),
        ("pixels", "u1", (channels, height, width)),
    ]
    dt = np.dtype(fields)
    assert dt.itemsize == record_bytes(version, height, width, channels, n_params)
    return dt


# --- folder names --------------------------------------------------------------------------
_NAME_RE = re.compile(
    r"^vimh-(?P<height>\d+)x(?P<width>\d+)(?:x(?P<channels>\d+))?"
    r"_(?P<sample_rate>\d+)Hz_(?P<duration>\d+p\d+)s_(?P<samples>\d+)dss"
    r"_(?P<synth>.+)_(?P<params>\d+)p$"
)


def format_duration(seconds: float) -> str:
    """1.0 -> '1p0', 0.25 -> '0p25' (the decimal point spelled 'p')."""
    text = f"{seconds:.6f}".rstrip("0")
    if text.endswith("."):
        text += "0"
    return text.replace(".", "p")


def dataset_folder_name(
    height: int,
    width: int,
    channels: int,
    sample_rate: int,
    duration: float,
    samples: int,
    synth: str,
    n_params: int,
) -> str:
    """`vimh-{H}x{W}x{C}_{SR}Hz_{dur}s_{N}dss_{synth}_{P}p`."""
    return (
        f"vimh-{height}x{width}x{channels}_{int(sample_rate)}Hz_{format_duration(duration)}s"
        f"_{samples}dss_{synth}_{n_params}p"
    )


@dataclass
class FolderName:
    height: int
    width: int
    channels: int | None
    sample_rate: int
    duration: float
    samples: int
    synth: str
    params: int


def parse_folder_name(name: str) -> FolderName | None:
    """Parse a dataset folder name; None when it does not follow the pattern."""
    m = _NAME_RE.match(name)
    if m is None:
        return None
    g = m.groupdict()
    return FolderName(
        height=int(g["height"]),
        width=int(g["width"]),
        channels=int(g["channels"]) if g["channels"] else None,
        sample_rate=int(g["sample_rate"]),
        duration=float(g["duration"].replace("p", ".")),
        samples=int(g["samples"]),
        synth=g["synth"],
        params=int(g["params"]),
    )
