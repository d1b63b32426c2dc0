"""Export a checkpoint to ONNX or TorchScript, each file with its JSON sidecar.

The checkpoint is read as everywhere else (`src/models/tasks.py`: `weights_only`, every
hyperparameter allow-listed, the network built by `src/utils/build.py`, never by Hydra's
`instantiate`); the imager is rebuilt from the plain `spectrogram_config` the datamodule saved
in it, and the normalisation statistics are checked to be finite numbers. What is supported:

- parameter estimation (every backbone family; every head mode): `input=waveform` (image
  models with power channels of any scale and resolution, and waveform models with trainable
  front-ends) or `input=image` (image models);
- the codec: its encoder and decoder as two files (`input` does not apply);
- not sequence models (their input is a phrase of frames with a streaming state).

ONNX goes through `torch.onnx.export(dynamo=True)` (the exporter torch maintains; it needs
onnxscript), TorchScript through `torch.jit.trace` (deprecated by torch in favour of
torch.export, but still what C++ hosts load with libtorch). Files are written to a temporary
name and renamed, so a failed export leaves nothing half-written; an existing file is never
replaced.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from src.data.vimh.classes import is_nominal
from src.errors import ConfigError, DataError
from src.imaging import SpectrogramImager
from src.models.codec_module import CodecModule
from src.models.multihead_module import MultiheadModule, count_parameters
from src.models.tasks import module_from_checkpoint, read_checkpoint
from src.utils.build import short

from .graphs import (
    IMAGE,
    INPUTS,
    WAVEFORM,
    CodecDecoderGraph,
    CodecEncoderGraph,
    EstimatorGraph,
    codec_frames,
)
from .sidecar import head_entry, imaging_entry, sidecar_path, write_sidecar

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
DATA_STATE = "VIMHDataModule"  # where image models keep their statistics and imaging config
OPSET = 18
EXAMPLE_BATCH = 2  # traced with 2 notes: a batch of 1 would be specialised by the exporter


def checkpoint_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_state(ckpt: dict, where: str) -> dict:
    state = ckpt.get(DATA_STATE)
    if not isinstance(state, dict):
        raise DataError(f"{where}: no {DATA_STATE} state (normalisation statistics) to export")
    return state


def statistics(state: dict, channels: int, where: str) -> tuple[list[float], list[float]]:
    """The checkpoint's per-channel pixel mean and std, checked (untrusted input)."""
    mean, std = state.get("mean"), state.get("std")
    ok = (
        isinstance(mean, list)
        and isinstance(std, list)
        and len(mean) == len(std) == channels
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in [*mean, *std])
        and all(v > 0 for v in std)
    )
    if not ok:
        raise DataError(
            f"{where}: {DATA_STATE}.mean and .std must be {channels} finite numbers each (std "
            f"> 0), got {short(mean)}, {short(std)}"
        )
    return [float(v) for v in mean], [float(v) for v in std]


def saved_imager(state: dict, module: MultiheadModule, where: str) -> SpectrogramImager | None:
    """The imager the checkpoint's images were made with, or None where it is not recorded."""
    cfg = state.get("spectrogram_config")
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise DataError(f"{where}: {DATA_STATE}.spectrogram_config must be a mapping")
    try:
        imager = SpectrogramImager(**cfg)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: {DATA_STATE}.spectrogram_config: {e}") from e
    shape = [len(imager.specs), imager.height, imager.width]
    if shape != list(module.hparams.input_shape):
        raise DataError(
            f"{where}: {DATA_STATE}.spectrogram_config makes {shape} images but the model takes "
            f"{list(module.hparams.input_shape)}"
        )
    return imager


def described(cfg):
    """A network config as a plain description: `_target_` becomes `class`, other Hydra keys
    (`_recursive_`) are dropped, so the sidecar holds no key a config loader would act on."""
    if isinstance(cfg, dict):
        return {
            ("class" if k == "_target_" else k): described(v)
            for k, v in cfg.items()
            if k == "_target_" or not (k.startswith("_") and k.endswith("_"))
        }
    if isinstance(cfg, (list, tuple)):
        return [described(v) for v in cfg]
    return cfg


def class_names(ckpt: dict, module: MultiheadModule, where: str) -> dict[str, list[str]]:
    """The nominal heads' class names the datamodule saved (checked: strings, one a class)."""
    state = ckpt.get(DATA_STATE)
    saved = state.get("class_names") if isinstance(state, dict) else None
    names = {}
    for spec in module.specs:
        if not is_nominal(spec):
            continue
        got = saved.get(spec.name) if isinstance(saved, dict) else None
        if not (
            isinstance(got, list)
            and len(got) == spec.num_classes
            and all(isinstance(n, str) for n in got)
        ):
            raise DataError(
                f"{where}: {DATA_STATE}.class_names.{spec.name} must name its "
                f"{spec.num_classes} classes, got {short(got)}"
            )
        names[spec.name] = list(got)
    return names


def family(net: nn.Module) -> str:
    if hasattr(net, "frontend") and hasattr(net, "backend"):
        return f"{type(net.frontend).__name__}+{type(net.backend).__name__}"
    return type(net).__name__


def estimator(ckpt: dict, module: MultiheadModule, input: str, where: str):
    """(graph, example input, sidecar fields) of a parameter-estimation checkpoint."""
    hp = module.hparams
    audio_model = getattr(module.net, "input_kind", "image") == "audio"
    imager, mean, std, norm = None, None, None, None
    if audio_model:
        n_samples, rate = int(hp.input_shape[-1]), int(hp.sample_rate)
    else:
        state = data_state(ckpt, where)
        mean, std = statistics(state, int(hp.input_shape[0]), where)
        norm = {
            "mean": mean,
            "std": std,
            "formula": "x = (pixel - mean[c]) / std[c] per channel c",
            "inside_graph": True,
        }
        imager = saved_imager(state, module, where)
        if imager is None and input == WAVEFORM:
            raise DataError(
                f"{where}: does not record its spectrogram config ({DATA_STATE}."
                f"spectrogram_config), so notes cannot be imaged inside the graph; export "
                f"input=image"
            )
        n_samples = imager.n_samples if imager is not None else None
        rate = imager.sample_rate if imager is not None else hp.sample_rate
    graph = EstimatorGraph(module, input, imager, mean, std).eval()
    if input == WAVEFORM:
        example = 0.1 * torch.randn(EXAMPLE_BATCH, n_samples, generator=torch.Generator())
        spec_in = {
            "name": "waveform",
            "kind": WAVEFORM,
            "dtype": "float32",
            "shape": ["batch", n_samples],
            "sample_rate": rate,
            "n_samples": n_samples,
            "preparation": "mono samples (full scale = 1.0) at sample_rate (resample first), "
            "the note's first n_samples from its onset, zero-padded at the end if shorter",
        }
    else:
        c, h, w = (int(v) for v in hp.input_shape)
        example = torch.randint(0, 256, (EXAMPLE_BATCH, c, h, w), dtype=torch.uint8)
        spec_in = {
            "name": "image",
            "kind": IMAGE,
            "dtype": "uint8",
            "shape": ["batch", c, h, w],
            "sample_rate": rate,
            "n_samples": n_samples,
            "preparation": "the note's image as the dataset stores it (see imaging)",
        }
    outputs = graph.output_names()
    names = class_names(ckpt, module, where)
    heads = [
        head_entry(
            module.heads[s.name],
            module.modes[s.name],
            names.get(s.name),
            outputs,
        )
        for s in module.specs
    ]
    fields = {
        "task": "multihead",
        "model_input": "audio" if audio_model else "image",
        "family": family(module.net),
        "net": described(dict(hp.net)),
        "parameters": count_parameters(module.net) + count_parameters(module.heads),
        "input": spec_in,
        "imaging": None if imager is None else imaging_entry(imager, input == WAVEFORM),
        "normalisation": norm,
        "heads": heads,
    }
    return graph, example, fields, outputs


def codec_parts(module: CodecModule) -> list[tuple[str, nn.Module, torch.Tensor, dict, list]]:
    """(stem, graph, example, sidecar fields, output names) of the codec's two halves."""
    net = module.net
    n_samples = int(module.hparams.input_shape[-1])
    frames = codec_frames(net, n_samples)
    stages = len(net.quantizer.codebook_sizes)
    about = {
        "task": "codec",
        "family": family(net),
        "net": described(dict(module.hparams.net)),
        "sample_rate": net.sample_rate,
        "n_samples": n_samples,
        "hop": net.hop,
        "frames": frames,
        "codebook_sizes": list(net.quantizer.codebook_sizes),
        "bitrate_kbps": net.bitrate_kbps,
    }
    wave_in = {
        "name": "waveform",
        "dtype": "float32",
        "shape": ["batch", n_samples],
        "sample_rate": net.sample_rate,
        "n_samples": n_samples,
    }
    codes = {"name": "codes", "dtype": "int64", "shape": ["batch", stages, frames]}
    example = 0.1 * torch.randn(EXAMPLE_BATCH, n_samples, generator=torch.Generator())
    with torch.no_grad():
        example_codes = CodecEncoderGraph(net).eval()(example)
    return [
        (
            "encoder",
            CodecEncoderGraph(net).eval(),
            example,
            {**about, "part": "encoder", "input": wave_in, "outputs_described": [codes]},
            ["codes"],
        ),
        (
            "decoder",
            CodecDecoderGraph(net, n_samples).eval(),
            example_codes,
            {**about, "part": "decoder", "input": codes, "outputs_described": [wave_in]},
            ["waveform"],
        ),
    ]


def save_graph(graph: nn.Module, example: torch.Tensor, path: Path, fmt: str, outputs) -> None:
    """Write the traced graph to `path` (via a temporary file), the batch dimension dynamic."""
    tmp = path.with_name(path.name + ".part")
    # The ONNX exporter warns that torchvision's operators are not registered (none is used)
    # and its optimizer logs every pass at INFO: only their errors reach the run's log.
    for name in ("torch.onnx._internal.exporter._registration", "onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notes
            if fmt == "onnx":
                torch.onnx.export(
                    graph,
                    (example,),
                    str(tmp),
                    dynamo=True,
                    external_data=False,
                    opset_version=OPSET,
                    input_names=["input"],
                    output_names=list(outputs),
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    verbose=False,
                )
            else:
                torch.jit.trace(graph, (example,), check_trace=False).save(str(tmp))
        os.replace(tmp, path)
    except ConfigError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(
            f"{type(graph).__name__} does not export to {fmt} ({type(e).__name__}: {first[:200]})"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)


def export_checkpoint(
    ckpt_path: str | Path, out_dir: str | Path, fmt: str = "onnx", input: str = WAVEFORM
) -> list[Path]:
    """Export the model of `ckpt_path` into `out_dir`; returns the files written (each model
    file followed by its sidecar)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if input not in INPUTS:
        raise ConfigError(f"input must be one of {INPUTS}, got {input!r}")
    where = str(ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    module = module_from_checkpoint(ckpt, ckpt_path)
    if isinstance(module, MultiheadModule):
        graph, example, fields, outputs = estimator(ckpt, module, input, where)
        parts = [("model", graph, example, fields, outputs)]
    elif isinstance(module, CodecModule):
        parts = codec_parts(module)
    else:
        raise ConfigError(
            f"{where} holds a {type(module).__name__}; export supports parameter estimation "
            f"(MultiheadModule) and the codec (CodecModule)"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    targets = [out / f"{stem}{FORMATS[fmt]}" for stem, *_ in parts]
    taken = [p for t in targets for p in (t, sidecar_path(t)) if p.exists()]
    if taken:
        raise ConfigError(f"{taken[0]} exists; export never replaces a file: choose another out")
    source = {"checkpoint": str(ckpt_path), "sha256": checkpoint_digest(ckpt_path)}
    written = []
    for (_, graph, example, fields, outputs), target in zip(parts, targets):
        save_graph(graph, example, target, fmt, outputs)
        runtime = {
            "format": fmt,
            "file": target.name,
            "opset": OPSET if fmt == "onnx" else None,
            "torch": torch.__version__.split("+")[0],
            "input_name": "input",
            "outputs": list(outputs),
        }
        sidecar = {**fields, "runtime": runtime, "source": source}
        written += [target, write_sidecar(sidecar_path(target), sidecar)]
    return written
