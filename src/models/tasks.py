"""The task modules a checkpoint can be rebuilt as, and loading a checkpoint once.

Each task (parameter estimation today; sequence prediction and the codec as they arrive) is a
LightningModule that writes its name into its checkpoints (`checkpoint["task"]`). Evaluation
and prediction read the file once, look the name up here and rebuild the module from its
saved hyperparameters: only classes listed here can be built from a checkpoint.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import lightning as L
import torch

from src.errors import DataError, DatasetNotFoundError
from src.models.multihead_module import MultiheadModule

TASKS: dict[str, type[L.LightningModule]] = {"multihead": MultiheadModule}
DEFAULT_TASK = "multihead"  # checkpoints written before tasks were named


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents (tensors and plain containers only: weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"ckpt_path={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise DataError(
            f"{path}: not a readable checkpoint of this project ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'empty or truncated file'})"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def module_from_checkpoint(ckpt: dict) -> L.LightningModule:
    """The task module of a checkpoint read by `read_checkpoint`, weights loaded, eval mode."""
    name = ckpt.get("task", DEFAULT_TASK)
    if name not in TASKS:
        raise DataError(f"checkpoint task {name!r} is not one of {sorted(TASKS)}")
    module = TASKS[name](**ckpt.get("hyper_parameters", {}))
    module.load_state_dict(ckpt["state_dict"])
    return module.eval()


def datamodule_state(ckpt: dict, datamodule: L.LightningDataModule) -> dict:
    """What the datamodule saved in the checkpoint (Lightning keys it by class name)."""
    return ckpt.get(type(datamodule).__qualname__, {})
