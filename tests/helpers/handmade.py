"""VIMH datasets packed by hand with struct, independent of the numpy dtypes under test."""

import json
import struct

from src.data.vimh import INFO_FILENAME, ParamSpec

PARAMS = [ParamSpec("pitch", 48.0, 72.0, 3.0, unit="midi"), ParamSpec("level", -21.0, 0.0, 3.0)]


def nsmt_info(h=2, w=3, c=1, version="2.1", n_train=2, n_test=1):
    """The JSON keys NSMT writes, for a 2-parameter dataset."""
    return {
        "format": "VIMH",
        "version": version,
        "dataset_name": "handmade",
        "height": h,
        "width": w,
        "channels": c,
        "channel_labels": ["Gray"],
        "varying_parameters": 2,
        "parameter_names": ["pitch", "level"],
        "parameter_mappings": {
            "pitch": {"min": 48, "max": 72, "step": 3, "description": "note"},
            "level": {"min": -21, "max": 0, "step": 3, "description": "dB"},
        },
        "fixed_parameters": {},
        "train_samples": n_train,
        "test_samples": n_test,
        "sample_rate": 8000,
        "duration": 1.0,
        "synth_type": "simple",
        "spectrogram_config": {},
        "label_encoding": {"format": "...", "metadata_bytes": 14},
    }


def record(version, h, w, c, pairs, pixels, spec=(-80.0, 0.0)):
    """One record packed by hand with struct (independent of the numpy dtype under test)."""
    out = struct.pack("<HHH", h, w, c)
    if version == "2.1":
        out += struct.pack("<ff", *spec)
    out += bytes([len(pairs)]) + b"".join(bytes(p) for p in pairs) + bytes(pixels)
    return out


def write_handmade(root, version="2.1", records=None, info=None):
    root.mkdir(parents=True, exist_ok=True)
    h, w, c = 2, 3, 1
    if records is None:
        records = {
            "train": [
                record(version, h, w, c, [(0, 0), (1, 255)], range(6)),
                record(version, h, w, c, [(0, 127), (1, 36)], range(10, 16)),
            ],
            "test": [record(version, h, w, c, [(1, 72), (0, 255)], [255] * 6)],
        }
    for split, recs in records.items():
        (root / split).write_bytes(b"".join(recs))
    (root / INFO_FILENAME).write_text(json.dumps(info or nsmt_info(h, w, c, version)))
    return root
