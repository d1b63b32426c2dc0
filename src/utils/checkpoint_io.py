"""Checkpoint files that are whole or absent: the Trainer's checkpoint plugin (configs/trainer).

Lightning writes a local checkpoint to the system temporary folder and moves it into place,
which is a copy (not a rename) whenever that folder is on another file system, so a run killed
meanwhile leaves a truncated `last.ckpt`. Here the bytes go to a hidden file beside the target,
are flushed to disk, and replace the target in one rename. Lightning's own reads are
weights-only and refuse OmegaConf interpolations, as the entry points' are. `object_key` says
where in a checkpoint that torch refused to load (weights-only) a Python object sits.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from src.errors import DataError
from src.utils.build import key_path, refuse_interpolations
from src.utils.files import process_umask


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic; remote URLs keep Lightning's path."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options for local files")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~process_umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's own reads (a resume's `trainer.fit(ckpt_path=...)`, the test of the best
        checkpoint) as `src.models.tasks.read_checkpoint` reads: weights-only, whatever the
        caller asked, and no OmegaConf interpolation anywhere in the file."""
        kwargs = {} if map_location is None else {"map_location": map_location}
        checkpoint = super().load_checkpoint(path, weights_only=True, **kwargs)
        try:
            refuse_interpolations(checkpoint, "", DataError)
        except DataError as e:
            raise DataError(f"{path}: {e}") from e
        return checkpoint


class _Stand:
    """Stands for every global a pickle names while `object_key` reads it: built and filled
    without calling anything from the file."""

    name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stand:
        obj = object.__new__(cls)
        obj.parts = [list(args), kwargs]
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.parts.append(state)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.parts.append({key: value})

    def append(self, value: Any) -> None:
        self.parts.append(value)

    def extend(self, values: Any) -> None:
        self.parts.extend(values)


class _Scan(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        return type("Stand", (_Stand,), {"name": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> None:  # tensor storages: not needed
        return None


def _path_to(obj: Any, name: str, where: str, seen: set[int]) -> str | None:
    """The key path of the first stand-in for `name` inside `obj` (each container once)."""
    stand = isinstance(obj, _Stand) or (isinstance(obj, type) and issubclass(obj, _Stand))
    if stand and obj.name == name:  # an object built from `name`, or `name` itself
        return where
    if id(obj) in seen:
        return None
    seen.add(id(obj))
    if isinstance(obj, _Stand):  # e.g. an OrderedDict: its items keep their own keys
        children = [(where, part) for part in obj.parts]
    elif isinstance(obj, dict):
        children = [(key_path(where, k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        children = [(key_path(where, i), v) for i, v in enumerate(obj)]
    else:
        return None
    for here, value in children:
        found = _path_to(value, name, here, seen)
        if found is not None:
            return found
    return None


def object_key(path: str | Path, name: str) -> str | None:
    """Where in a checkpoint the Python object `name` (a global its pickle names, e.g.
    `shutil.copyfile`) sits, as a key path such as `hyper_parameters.net.dropout`; None when not
    found. The pickle is read by an unpickler whose every global is a stand-in (`_Stand`), so
    nothing from the file is called; any failure just gives None."""
    try:
        with zipfile.ZipFile(path) as archive:
            entry = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            data = archive.read(entry)
        return _path_to(_Scan(io.BytesIO(data)).load(), name, "", set()) or None
    except Exception:  # a message without the key is still the right message
        return None
