"""The task modules a checkpoint can be rebuilt as, and reading a checkpoint once, safely.

Each task (parameter estimation, sequence prediction, the codec) is a LightningModule that
writes its name into its checkpoints (`checkpoint["task"]`). Evaluation and prediction read the
file once, look the name up here and rebuild the module from its saved hyperparameters.

A checkpoint is untrusted input, and its values are plain data. `torch.load(weights_only=True)`
keeps the file from running code while it is read (any failure to parse it is "not a readable
checkpoint"); no string anywhere in it may hold an OmegaConf interpolation (`${`); and before
anything is built every hyperparameter is checked: only the task's own saved arguments, plain
values, no Hydra key, and a network config whose classes are network classes of this project
and whose keyword values have the types their signatures name (`src/utils/build.py`, which
also builds the network: Hydra's `instantiate` never sees a checkpoint's values). Anything else
is refused with one line naming the key that holds it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning as L
import torch

from src.data.spec import DataSpec
from src.errors import DataError, DatasetNotFoundError
from src.models.codec_module import CodecModule
from src.models.multihead_module import MultiheadModule
from src.models.sequence_module import SequenceModule
from src.utils.build import (
    check_component,
    check_data,
    key_path,
    refuse_hydra_keys,
    refuse_interpolations,
    short,
)
from src.utils.checkpoint_io import object_key
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

TASKS: dict[str, type[L.LightningModule]] = {
    "multihead": MultiheadModule,
    "codec": CodecModule,
    "sequence": SequenceModule,
}
DEFAULT_TASK = "multihead"  # checkpoints written before tasks were named
# Constructor arguments no task saves: training builds them from its own config, never a file.
NOT_SAVED = ("optimizer", "scheduler")
# What the tasks give a network besides its config (from the data), so a config lacks them.
NET_GIVEN = ("input_shape", "sample_rate", "n_mels", "ahead")
# Data facts a checkpoint's datamodule state records; compared for image inputs.
INPUT_FACTS = ("spectrogram_config", "channel_labels")


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's contents (tensors and plain containers only: weights_only=True), with
    no OmegaConf interpolation in any string, key or value."""
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
    except Exception as e:  # the unpickler raises many types on a bad file
        raise DataError(
            f"{path}: not a readable checkpoint of this project ({unreadable(path, e)})"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise DataError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    try:
        refuse_interpolations(ckpt, "", DataError)
    except DataError as e:
        raise DataError(f"{path}: {e}") from e
    except RecursionError as e:
        raise DataError(f"{path}: values nested too deeply for a checkpoint of this project") from e
    return ckpt


def unreadable(path: Path, e: Exception) -> str:
    """Why torch.load failed, in words: a Python object (named, with the key holding it, when
    found) or a file that is not a whole checkpoint."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    if not found:
        return "truncated, corrupted or another format"
    name = found.group(1)
    key = object_key(path, name)
    return (
        f"{key or 'it'} holds a Python object ({name}); checkpoints may hold only tensors "
        f"and plain values, since loading objects can run code"
    )


def task_of(ckpt: dict, where: str | Path = "checkpoint") -> type[L.LightningModule]:
    name = ckpt.get("task", DEFAULT_TASK)
    if not isinstance(name, str) or name not in TASKS:
        raise DataError(f"{where}: task {short(name)} is not one of {sorted(TASKS)}")
    return TASKS[name]


def checked_hyper_parameters(ckpt: dict, where: str | Path = "checkpoint") -> dict:
    """The hyperparameters, once every key and value has passed the allow-list (module doc).
    What is refused wherever it sits (`${`, a Hydra key) is named by its own key first."""
    task = task_of(ckpt, where)
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, dict):
        raise DataError(f"{where}: no 'hyper_parameters' to rebuild the model from")
    accepted = set(inspect.signature(task.__init__).parameters) - {"self", *NOT_SAVED}
    try:
        refuse_interpolations(hparams, "hyper_parameters", DataError)
        for key, value in hparams.items():
            here = key_path("hyper_parameters", key)
            refuse_hydra_keys(value, here, DataError, components=key == "net")
        unknown = [key_path("hyper_parameters", k) for k in hparams if k not in accepted]
        if unknown:
            raise DataError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not saved by "
                f"{task.__name__} (it saves {', '.join(sorted(accepted))}); refusing to build "
                f"anything from it"
            )
        for key, value in hparams.items():
            here = key_path("hyper_parameters", key)
            if key == "net":
                check_component(value, here, DataError, given=NET_GIVEN)
            else:
                check_data(value, here, DataError)
    except DataError as e:
        raise DataError(f"{where}: {e}") from e
    except RecursionError as e:
        raise DataError(f"{where}: hyper_parameters nested too deeply") from e
    return hparams


def module_from_checkpoint(ckpt: dict, where: str | Path = "checkpoint") -> L.LightningModule:
    """The task module of a checkpoint read by `read_checkpoint`, weights loaded, eval mode."""
    hparams = checked_hyper_parameters(ckpt, where)
    try:
        module = task_of(ckpt, where)(**hparams)
        module.load_state_dict(ckpt["state_dict"])
    except Exception as e:  # checked values may still not make a model
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{where}: cannot rebuild the model it holds ({first})") from e
    return module.eval()


def datamodule_state(
    ckpt: dict, datamodule: L.LightningDataModule, where: str | Path = "checkpoint"
) -> dict:
    """What the datamodule saved in the checkpoint (Lightning keys it by class name)."""
    name = type(datamodule).__qualname__
    state = ckpt.get(name, {})
    if not isinstance(state, dict):
        raise DataError(f"{where}: {name} = {short(state)} is not a datamodule's saved state")
    return state


def check_data_matches(ckpt: dict, datamodule, where: str | Path = "checkpoint") -> None:
    """Refuse data other than what the checkpoint was trained on: every head's range, step,
    scale and class count, the input kind and shape, the sample rate, and for images the
    spectrogram config and channels, and the class names of nominal heads; a task with a
    `data_differences(hparams, datamodule)` hook (a list of differences) checks its own. Call on
    checked hyperparameters, before building."""
    hparams = checked_hyper_parameters(ckpt, where)
    # A task whose data is not described by a DataSpec says how its data may differ.
    own_check = getattr(task_of(ckpt, where), "data_differences", None)
    if own_check is not None:
        diffs = own_check(hparams, datamodule)
        if diffs:
            data = getattr(datamodule, "data_dir", None) or "this data config"
            raise DataError(
                f"{where} was trained on other data than {data} (checkpoint vs data): "
                + "; ".join(diffs)
            )
        return
    try:
        trained = DataSpec.from_model_kwargs(hparams)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{where}: hyper_parameters do not describe the data ({e})") from e
    diffs = trained.differences(datamodule.spec)
    state = datamodule_state(ckpt, datamodule, where)
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
