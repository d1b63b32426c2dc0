"""The JSON sidecar of an exported model: everything another program needs, without this
repository, to feed the graph and read its outputs (docs/deploy.md describes every field).

It is written beside the model file (`model.onnx` -> `model.json`) and read back by
`src/deploy/runtime.py` as untrusted data: plain values only (`check_data`), every field it
uses checked, a bad one named with the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from src.data.vimh.format import ParamSpec
from src.errors import DataError
from src.imaging import SpectrogramImager
from src.models.heads import CONTINUOUS_MODES, Head
from src.utils.build import check_data

FORMAT = "nsm-export"
VERSION = 1

# How a head's raw output becomes (value, class); `at(position)` is the value at a position
# along the parameter's axis (see `axis` of each head).
DECODE = {
    "classification": "class = argmax(raw); value = class_values[class]",
    "soft": "class = argmax(raw); value = class_values[class]",
    "ordinal": "class = number of raw[k] > 0; value = class_values[class]",
    "expectation": "p = softmax(raw); position = sum_k(p[k] * k) * step; value = at(position); "
    "class = argmax(raw)",
    "offset": "K = num_classes; class = argmax(raw[:K]); position = (class + clip(raw[K + "
    "class], -0.5, 0.5)) * step; value = at(position)",
    "regression": "position = clip(raw[0], 0, 1) * extent; value = at(position); class = "
    "clip(round(position / step), 0, num_classes - 1)",
}
AXIS = {
    "linear": "at(position) = min + clip(position, 0, extent); extent = max - min",
    "log": "at(position) = min * 2 ** clip(position, 0, extent); extent = log2(max / min) "
    "(octaves)",
}
PROBABILITY = "softmax of the class logits (raw[:num_classes]) at the predicted class"


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def head_entry(head: Head, mode: str, class_names: list[str] | None, outputs: list[str]) -> dict:
    """One head: what it measures, its class grid, and how its outputs become a value."""
    spec = head.spec
    name = spec.name
    return {
        "name": name,
        "description": spec.description,
        "unit": spec.unit,
        "scale": spec.scale,
        "min": spec.min,
        "max": spec.max,
        "step": spec.step,
        "extent": spec.extent,
        "num_classes": spec.num_classes,
        "class_values": [float(v) for v in head.class_values.tolist()],
        "class_names": class_names,
        "mode": mode,
        "continuous": mode in CONTINUOUS_MODES,
        "raw_size": head.num_outputs,
        "outputs": {
            "value": name,
            "class": f"{name}_class",
            "prob": f"{name}_prob" if f"{name}_prob" in outputs else None,
            "raw": f"{name}_raw",
        },
        "decode": DECODE[mode],
        "axis": AXIS[spec.scale],
        "probability": PROBABILITY if f"{name}_prob" in outputs else None,
        "spec": spec.to_dict(),
    }


def imaging_entry(imager: SpectrogramImager, inside: bool) -> dict:
    """The imager's settings (its `config()` rebuilds it) and the conventions of its pixels."""
    return {
        **imager.config(),
        "hop_length": imager.hop_length,
        "inside_graph": inside,
        "frames": "column t is the STFT frame centred on sample t * hop_length (the window "
        "starts n_fft // 2 samples earlier; zeros outside the note); rows are filters, row 0 "
        "the lowest frequency",
        "power": "|STFT|^2 through the calibrated filterbank (a full-scale sine at a filter's "
        "centre reads 0 dB), in dB",
        "pixel": "pixel = floor(clip((dB - db_min) / (db_max - db_min) * 255 + 0.5, 0, 255.5)) "
        "for power channels (uint8)",
        "row_frequencies_hz": [
            [round(float(f), 3) for f in imager.frequencies(c)] for c in range(len(imager.specs))
        ],
    }


def write_sidecar(path: Path, sidecar: dict) -> Path:
    """Write the sidecar (plain values only) beside its model file."""
    check_data(sidecar, "sidecar")
    path.write_text(json.dumps({"format": FORMAT, "version": VERSION, **sidecar}, indent=2))
    return path


def read_sidecar(model_path: str | Path) -> dict:
    """The sidecar of `model_path`, checked to be this project's and plain data."""
    path = sidecar_path(model_path)
    if not path.is_file():
        raise DataError(f"{path}: no sidecar beside {model_path} (export writes both)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON sidecar ({e})") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path}: 'format' must be {FORMAT!r}; not a sidecar of src/export.py")
    if data.get("version") != VERSION:
        raise DataError(f"{path}: 'version' must be {VERSION}, got {data.get('version')!r}")
    try:
        check_data(data, "", DataError)
    except DataError as e:
        raise DataError(f"{path}: {e}") from e
    return data


def sidecar_specs(data: dict, where: str) -> tuple[ParamSpec, ...]:
    """The heads' ParamSpecs a sidecar names, in output order."""
    heads = data.get("heads")
    if not isinstance(heads, list) or not heads:
        raise DataError(f"{where}: 'heads' must be a non-empty list")
    specs = []
    for i, head in enumerate(heads):
        try:
            specs.append(ParamSpec.from_dict(head["spec"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: heads[{i}].spec does not describe a parameter ({e})") from e
    return tuple(specs)
