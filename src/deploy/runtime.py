"""Run an exported estimation model with ONNX Runtime, as `src/predict.py onnx_path=...` does.

Only ONNX files are run here: a TorchScript archive holds code that torch executes when it is
loaded, so a file from elsewhere is not opened that way; an ONNX graph is data that the
runtime interprets. The sidecar is read as untrusted data (`src/deploy/sidecar.py`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from src.errors import ConfigError, DataError, DatasetNotFoundError

from .graphs import IMAGE, WAVEFORM
from .sidecar import read_sidecar, sidecar_specs


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session of `path` (`threads` intra-op threads; None: torch's)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ConfigError(
            "running an exported model needs onnxruntime: pip install -e '.[export]'"
        ) from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # the runtime raises its own types on a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: not a loadable ONNX model ({first[:200]})") from e


class ExportedEstimator:
    """An exported parameter-estimation graph and its sidecar: `specs`, `class_names` and the
    input it takes, and `predict(notes, imager, batch_size)` like `src/predict.py`'s."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise DatasetNotFoundError(f"onnx_path={path}: no such file")
        if path.suffix != ".onnx":
            raise ConfigError(
                f"onnx_path={path}: predict runs ONNX files only (a TorchScript archive runs "
                f"code when loaded); export with format=onnx"
            )
        self.path = path
        data = read_sidecar(path)
        where = f"{path.with_suffix('.json')}"
        if data.get("task") != "multihead":
            raise ConfigError(f"{where}: task {data.get('task')!r} has no parameters to predict")
        self.specs = sidecar_specs(data, where)
        spec_in, runtime = data.get("input"), data.get("runtime")
        if not isinstance(spec_in, dict) or spec_in.get("kind") not in (WAVEFORM, IMAGE):
            raise DataError(f"{where}: input.kind must be '{WAVEFORM}' or '{IMAGE}'")
        if not isinstance(runtime, dict) or not isinstance(runtime.get("outputs"), list):
            raise DataError(f"{where}: runtime.outputs must list the graph's outputs")
        self.input = spec_in["kind"]
        self.sample_rate, self.n_samples = spec_in.get("sample_rate"), spec_in.get("n_samples")
        self.model_input = data.get("model_input")
        self.hparams = {"input_kind": self.model_input}  # what predict's pairing check reads
        self.imaging = data.get("imaging")
        self.class_names = {}
        for i, (spec, head) in enumerate(zip(self.specs, data["heads"])):
            names = head.get("class_names")
            if names is None:
                continue
            if not (
                isinstance(names, list)
                and len(names) == spec.num_classes
                and all(isinstance(n, str) for n in names)
            ):
                raise DataError(
                    f"{where}: heads[{i}].class_names must be {spec.num_classes} strings or null"
                )
            self.class_names[spec.name] = tuple(names)
        self.outputs = [str(o) for o in runtime["outputs"]]
        self.session = onnx_session(path, threads)
        names = [o.name for o in self.session.get_outputs()]
        if names != self.outputs:
            raise DataError(f"{where}: runtime.outputs {self.outputs} but {path} gives {names}")

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(None, {"input": x})))

    def predict(self, notes: torch.Tensor, imager, batch_size: int) -> dict:
        """{head: (values float64, classes int64, probability of the class or NaN)} for (N,
        n_samples) notes; `imager` images them for an image graph."""
        parts: dict[str, list] = {s.name: [] for s in self.specs}
        for start in range(0, len(notes), batch_size):
            audio = notes[start : start + batch_size]
            if self.input == IMAGE:
                with torch.inference_mode():
                    x = imager(audio).numpy()
            else:
                x = audio.float().numpy()
            out = self.run(np.ascontiguousarray(x))
            for name in parts:
                v, c = out[name], out[f"{name}_class"]
                p = out.get(f"{name}_prob", np.full(v.shape, np.nan, np.float32))
                parts[name].append((v, c, p))
        return {
            name: (
                torch.from_numpy(np.concatenate([v for v, _, _ in got])).double(),
                torch.from_numpy(np.concatenate([c for _, c, _ in got])).long(),
                torch.from_numpy(np.concatenate([p for _, _, p in got])).float(),
            )
            for name, got in parts.items()
        }
