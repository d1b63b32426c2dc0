"""The task modules a checkpoint can be rebuilt as, and reading a checkpoint once, safely.

Each task (parameter estimation today; sequence prediction and the codec as they arrive) is a
LightningModule that writes its name into its checkpoints (`checkpoint["task"]`). Evaluation
and prediction read the file once, look the name up here and rebuild the module from its
saved hyperparameters.

A checkpoint is untrusted input. `torch.load(weights_only=True)` keeps the file from running
code while it is read; rebuilding is the other door, since hyperparameters name classes
(`_target_`) that Hydra would instantiate. So before anything is built, every hyperparameter
is checked: only the task's own constructor arguments, only plain values, and only
`_target_`s that are network classes of this project (`src.models.components`). Anything else
is refused with the key that holds it.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from src.data.spec import DataSpec
from src.errors import DataError, DatasetNotFoundError
from src.models.multihead_module import MultiheadModule
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

TASKS: dict[str, type[L.LightningModule]] = {"multihead": MultiheadModule}
DEFAULT_TASK = "multihead"  # checkpoints written before tasks were named
COMPONENTS = "src.models.components"  # the only package a checkpoint may name classes from
HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_")
PLAIN = (bool, int, float, str, type(None))
# Data facts a checkpoint's datamodule state records; compared for image inputs.
INPUT_FACTS = ("spectrogram_config", "channel_labels")


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents (tensors and plain containers only: weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"ckpt_path={path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise DataError(
            f"{path}: empty checkpoint file (0 bytes), left by a run killed while writing it; "
            f"use another checkpoint of that run"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        why = (
            f"it holds a Python object ({found.group(1)}); checkpoints may hold only tensors "
            f"and plain values, since loading objects can run code"
            if found
            else "truncated, corrupted or another format"
        )
        raise DataError(f"{path}: not a readable checkpoint of this project ({why})") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def task_of(ckpt: dict, where: str | Path = "checkpoint") -> type[L.LightningModule]:
    name = ckpt.get("task", DEFAULT_TASK)
    if name not in TASKS:
        raise DataError(f"{where}: task {name!r} is not one of {sorted(TASKS)}")
    return TASKS[name]


def allowed_class(target: Any, where: str) -> type:
    """The class a checkpoint's `_target_` names, if it is a network class of this project."""
    refuse = (
        f"{where}._target_ = {target!r} is not allowed: a checkpoint may only name network "
        f"classes of {COMPONENTS}; refusing to build anything from it"
    )
    if not isinstance(target, str) or not target.startswith(COMPONENTS + "."):
        raise DataError(refuse)
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)  # our own package only (checked above)
    except (ImportError, ValueError) as e:
        raise DataError(refuse) from e
    cls = getattr(module, name, None)
    if not (
        inspect.isclass(cls)
        and issubclass(cls, nn.Module)
        and cls.__module__.startswith(COMPONENTS + ".")
    ):
        raise DataError(refuse)
    return cls


def check_plain(value: Any, where: str) -> None:
    """Plain values and containers only; every mapping with a `_target_` names an allowed
    class; no Hydra keys beyond `HYDRA_KEYS`."""
    if isinstance(value, PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise DataError(f"{where}: key {key!r} is not a string")
            if key.startswith("_") and key.endswith("_") and key not in HYDRA_KEYS:
                raise DataError(f"{where}.{key} is not allowed in a checkpoint")
        if "_target_" in value:
            allowed_class(value["_target_"], where)
        for key, v in value.items():
            check_plain(v, f"{where}.{key}")
        return
    raise DataError(
        f"{where}: a {type(value).__name__} value; a checkpoint's hyperparameters may hold "
        f"only plain values"
    )


def checked_hyper_parameters(ckpt: dict, where: str | Path = "checkpoint") -> dict:
    """The hyperparameters, once every key and value has passed the allow-list."""
    task = task_of(ckpt, where)
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise DataError(f"{where}: no 'hyper_parameters' to rebuild the model from")
    accepted = set(inspect.signature(task.__init__).parameters) - {"self"}
    unknown = sorted(set(hparams) - accepted)
    if unknown:
        raise DataError(
            f"{where}: hyper_parameters {unknown} are not arguments of {task.__name__}; "
            f"refusing to build anything from it"
        )
    for key, value in hparams.items():
        check_plain(value, f"{where}: hyper_parameters.{key}")
    return hparams


def module_from_checkpoint(ckpt: dict, where: str | Path = "checkpoint") -> L.LightningModule:
    """The task module of a checkpoint read by `read_checkpoint`, weights loaded, eval mode."""
    hparams = checked_hyper_parameters(ckpt, where)
    try:
        module = task_of(ckpt, where)(**hparams)
        module.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{where}: cannot rebuild the model it holds ({first})") from e
    return module.eval()


def datamodule_state(ckpt: dict, datamodule: L.LightningDataModule) -> dict:
    """What the datamodule saved in the checkpoint (Lightning keys it by class name)."""
    return ckpt.get(type(datamodule).__qualname__, {})


def check_data_matches(ckpt: dict, datamodule, where: str | Path = "checkpoint") -> None:
    """Refuse data other than what the checkpoint was trained on: every head's range, step,
    scale and class count, the input kind and shape, the sample rate, and for images the
    spectrogram config and channels, and the class names of nominal heads. Call on checked
    hyperparameters, before building."""
    hparams = checked_hyper_parameters(ckpt, where)
    try:
        trained = DataSpec.from_model_kwargs(hparams)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}: hyper_parameters do not describe the data ({e})") from e
    diffs = trained.differences(datamodule.spec)
    state = datamodule_state(ckpt, datamodule)
    if trained.input_kind == "image":
        recorded = [k for k in INPUT_FACTS if k in state]
        if not recorded:
            log.warning(f"{where} does not record its spectrogram config: not compared")
        for key in recorded:
            now = datamodule.info.raw.get(key)
            if state[key] != now:
                diffs.append(f"{key}: {state[key]} vs {now}")
    # Nominal heads: the same class count is not enough, class k must name the same class.
    if "class_names" in state:
        now = {k: list(v) for k, v in getattr(datamodule, "class_names", {}).items()}
        if state["class_names"] != now:
            diffs.append(f"class_names: {state['class_names']} vs {now}")
    if diffs:
        raise DataError(
            f"{where} was trained on other data than {datamodule.data_dir} "
            f"(checkpoint vs dataset): " + "; ".join(diffs)
        )
