"""A checkpoint is untrusted input: a hostile one builds nothing, a broken one gets a clear
error, and one trained on other data is refused at eval and at resume, whatever differs."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from src.data.vimh import INFO_FILENAME, ParamSpec
from src.errors import DataError
from src.eval import evaluate
from src.models.tasks import module_from_checkpoint, read_checkpoint
from src.train import train
from tests.conftest import compose_config
from tests.helpers.entry import assert_clean_error, run_script
from tests.helpers.runs import QUIET, on, raises_user_error
from tests.helpers.vimh import DEFAULT_PARAMS, make_vimh


def eval_cfg(tmp_path, ckpt, data):
    return compose_config(
        "eval",
        tmp_path / "eval",
        [*on(data), f"ckpt_path={ckpt}", "logger=none", "callbacks.rich_progress_bar=null"],
    )


def hostile(trained: Path, tmp_path: Path, edit) -> tuple[Path, Path]:
    """A copy of a real checkpoint with `edit(hyper_parameters, victim, payload)` applied, and
    the file the edit would overwrite."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    payload = tmp_path / "payload.txt"
    payload.write_text("overwritten")
    ckpt = torch.load(trained, weights_only=True)
    edit(ckpt["hyper_parameters"], {"src": str(payload), "dst": str(victim)})
    path = tmp_path / "hostile.ckpt"
    torch.save(ckpt, path)
    return path, victim


def copy_file(args: dict) -> dict:
    return {"_target_": "shutil.copyfile", **args}


def test_a_hostile_checkpoint_overwrites_nothing_at_eval(trained_ckpt, toy, tmp_path):
    """The reported attack: a nested `_target_` in the net config ran before anything failed."""
    path, victim = hostile(
        trained_ckpt, tmp_path, lambda h, a: h["net"].update(channels=copy_file(a))
    )
    result = run_script(
        "src/eval.py", *on(toy), f"ckpt_path={path}", f"paths.log_dir={tmp_path}/logs"
    )
    assert_clean_error(result, "hyper_parameters.net.channels._target_ = 'shutil.copyfile'")
    assert "is not allowed" in result.stderr
    assert victim.read_text() == "precious"


HOSTILE = {
    "net target": lambda h, a: h.update(net=copy_file(a)),
    "nested in a list": lambda h, a: h["net"].update(channels=[8, copy_file(a)]),
    "optimizer": lambda h, a: h.update(optimizer={**copy_file(a), "_partial_": True}),
    "scheduler": lambda h, a: h.update(scheduler=copy_file(a)),
    "positional args": lambda h, a: h["net"].update(_args_=[a["src"], a["dst"]]),
    "not a class": lambda h, a: h["net"].update(_target_="src.models.components.cnn.nn"),
    "outside components": lambda h, a: h["net"].update(_target_="src.utils.files.honour_umask"),
    "unknown argument": lambda h, a: h.update(evil=copy_file(a)),
    "not a plain value": lambda h, a: h.update(head_modes=torch.zeros(1)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_hyper_parameters_are_refused_before_anything_is_built(
    trained_ckpt, tmp_path, case
):
    path, victim = hostile(trained_ckpt, tmp_path, HOSTILE[case])
    ckpt = read_checkpoint(path)
    with pytest.raises(DataError, match=r"not allowed|refusing|only plain values"):
        module_from_checkpoint(ckpt, path)
    assert victim.read_text() == "precious"


def test_the_allow_list_still_rebuilds_every_project_checkpoint(trained_ckpt):
    ckpt = read_checkpoint(trained_ckpt)
    original = copy.deepcopy(ckpt["hyper_parameters"])
    model = module_from_checkpoint(ckpt, trained_ckpt)
    assert model.head_names == ["note_number", "note_velocity"]
    assert ckpt["hyper_parameters"] == original


def test_broken_checkpoint_files_get_a_clear_error_at_eval(trained_ckpt, toy, tmp_path):
    data = trained_ckpt.read_bytes()
    cases = {
        "empty.ckpt": (b"", "empty checkpoint file"),
        "truncated.ckpt": (data[: len(data) // 2], "truncated, corrupted or another format"),
        "garbage.ckpt": (b"\x80\x04garbage" * 50, "not a readable checkpoint"),
    }
    for name, (content, match) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with raises_user_error(DataError, match=match):
            evaluate(eval_cfg(tmp_path, path, toy))
    pickled = tmp_path / "object.ckpt"
    torch.save({"state_dict": {}, "model": torch.nn.Linear(2, 2)}, pickled)
    with raises_user_error(DataError, match=r"holds a Python object \(torch.nn.modules"):
        evaluate(eval_cfg(tmp_path, pickled, toy))
    for message in ("weights_only=False", "Weights only load failed"):
        with pytest.raises(DataError) as info:
            read_checkpoint(pickled)
        assert message not in str(info.value)


def other(tmp_path: Path, name: str, **kwargs) -> Path:
    """The toy's recipe with one thing changed."""
    settings = dict(n_train=64, n_val=16, n_test=16, params=DEFAULT_PARAMS[:2], name=name)
    return make_vimh(tmp_path, **{**settings, **kwargs})


def other_spectrogram(tmp_path: Path, toy: Path) -> Path:
    folder = tmp_path / "hop"
    shutil.copytree(toy, folder)
    info = json.loads((folder / INFO_FILENAME).read_text())
    info["spectrogram_config"]["n_fft"] *= 2
    (folder / INFO_FILENAME).write_text(json.dumps(info))
    return folder


def pitch(*args, **kwargs):
    """The toy's first head with another range, step or scale; the second head unchanged."""
    return [ParamSpec("note_number", *args, **kwargs), DEFAULT_PARAMS[1]]


DIFFERENT = {
    "range": (
        lambda t, toy: other(t, "range", params=pitch(36.0, 60.0, 3.0)),
        "head 'note_number' min: 48.0 vs 36.0",
    ),
    "step": (
        lambda t, toy: other(t, "step", params=pitch(48.0, 72.0, 6.0)),
        "head 'note_number' classes: 9 vs 5",
    ),
    "scale": (
        lambda t, toy: other(t, "scale", params=pitch(48.0, 72.0, 3.0, scale="log")),
        "head 'note_number' scale: linear vs log",
    ),
    "heads": (lambda t, toy: other(t, "heads", params=3), "heads: ['note_number', 'note_veloc"),
    "shape": (lambda t, toy: other(t, "shape", height=16), "input shape: (1, 8, 8) vs (1, 16, 8)"),
    "spectrogram": (other_spectrogram, "spectrogram_config: {'type': 'toy', 'n_fft': 16} vs"),
}


@pytest.mark.parametrize("case", sorted(DIFFERENT))
def test_eval_refuses_data_other_than_the_training_data(trained_ckpt, toy, tmp_path, case):
    make, match = DIFFERENT[case]
    data = make(tmp_path, toy)
    with raises_user_error(DataError, match="was trained on other data than .*" + re.escape(match)):
        evaluate(eval_cfg(tmp_path, trained_ckpt, data))
    assert not (tmp_path / "eval" / "predictions.csv").exists()


def test_resume_refuses_other_data_and_another_model(trained_ckpt, tmp_path, toy):
    data = DIFFERENT["range"][0](tmp_path, toy)
    cfg = compose_config(
        "train", tmp_path / "run", [*on(data), f"ckpt_path={trained_ckpt}", *QUIET]
    )
    with raises_user_error(DataError, match="head 'note_number' min: 48.0 vs 36.0"):
        train(cfg)
    cfg = compose_config(
        "train", tmp_path / "run", [*on(toy), f"ckpt_path={trained_ckpt}", "model=cnn_50k", *QUIET]
    )
    with raises_user_error(Exception, match="resume with the same model config"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
