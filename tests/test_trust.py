"""A checkpoint is untrusted input: its values are plain data (never resolved by OmegaConf,
never built by Hydra), a hostile one builds nothing, a broken one gets a clear error, and one
trained on other data is refused at eval and at resume, whatever differs. (Generated payloads:
tests/test_trust_fuzz.py.)"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.data.vimh import INFO_FILENAME, ParamSpec
from src.errors import DataError
from src.eval import evaluate
from src.models.tasks import module_from_checkpoint, read_checkpoint
from src.predict import predict
from src.train import train
from src.utils.instantiators import build_trainer
from tests.conftest import compose_config
from tests.helpers.entry import assert_clean_error, run_script
from tests.helpers.models import MODEL_DIR, build_config, checkpoint_of
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


def test_the_allow_list_still_rebuilds_every_project_checkpoint(trained_ckpt, tmp_path):
    ckpt = read_checkpoint(trained_ckpt)
    original = copy.deepcopy(ckpt["hyper_parameters"])
    model = module_from_checkpoint(ckpt, trained_ckpt)
    assert model.head_names == ["note_number", "note_velocity"]
    assert ckpt["hyper_parameters"] == original
    # Every model config of every task (front-ends, codecs, sequence models included), as its
    # checkpoint holds it, rebuilds the same network with the same weights and outputs.
    for config in sorted(MODEL_DIR.glob("*.yaml")):
        module = build_config(config).eval()
        path = tmp_path / f"{config.stem}.ckpt"
        torch.save(checkpoint_of(module), path)
        ckpt = read_checkpoint(path)
        rebuilt = module_from_checkpoint(ckpt, path)
        assert type(rebuilt) is type(module) and type(rebuilt.net) is type(module.net), config
        assert dict(rebuilt.hparams) == dict(module.hparams), config
        for key, value in module.state_dict().items():
            assert torch.equal(rebuilt.state_dict()[key], value), (config, key)
    # Checkpoints written while Hydra built the nets kept `_recursive_: false` in a front-end
    # net's config: it still rebuilds (the key means nothing now).
    module = build_config(MODEL_DIR / "stft_bcresnet_81k.yaml")
    ckpt = checkpoint_of(module)
    ckpt["hyper_parameters"]["net"]["_recursive_"] = False
    assert isinstance(module_from_checkpoint(ckpt).net, type(module.net))


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
    with raises_user_error(DataError, match=r"model holds a Python object \(torch.nn.modules"):
        evaluate(eval_cfg(tmp_path, pickled, toy))
    for message in ("weights_only=False", "Weights only load failed"):
        with pytest.raises(DataError) as info:
            read_checkpoint(pickled)
        assert message not in str(info.value)


def broken_files(data: bytes, tmp_path: Path, n: int = 150) -> list[Path]:
    """Seeded garbage (random bytes; a zip or pickle header then random bytes) and truncations
    of a real checkpoint (its first 20 kB, and random lengths)."""
    rng = random.Random(19)
    heads = [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", data[:64], data[:4096]]
    contents = [data[:20_000], data[:1], data[:-1]]
    for i in range(n):
        if i % 2:
            contents.append(data[: rng.randrange(1, len(data))])
        else:
            head = heads[i // 2 % len(heads)]
            contents.append(head + rng.randbytes(rng.randrange(1, 30_000)))
    paths = []
    for i, content in enumerate(contents):
        paths.append(tmp_path / f"broken_{i:03d}.ckpt")
        paths[-1].write_bytes(content)
    return paths


def test_truncated_and_garbage_checkpoints_are_not_readable_at_eval_and_predict(
    trained_ckpt, toy, tmp_path
):
    """Whatever torch's unpickler raises on a broken file (IndexError, OSError, KeyError, ...):
    one line, `not a readable checkpoint`. Seeded, so a failure reproduces."""
    for path in broken_files(trained_ckpt.read_bytes(), tmp_path):
        with pytest.raises(DataError, match=r"not a readable checkpoint|not a Lightning ch") as e:
            read_checkpoint(path)
        assert "\n" not in str(e.value), path
    first_20k = tmp_path / "broken_000.ckpt"
    with raises_user_error(DataError, match="not a readable checkpoint of this project"):
        evaluate(eval_cfg(tmp_path, first_20k, toy))
    (tmp_path / "audio").mkdir()
    cfg = compose_config(
        "predict", tmp_path / "predict", [*on(toy), f"ckpt_path={first_20k}", f"audio={toy}"]
    )
    with raises_user_error(DataError, match="not a readable checkpoint of this project"):
        predict(cfg)
    assert not (tmp_path / "predict").exists() or not any((tmp_path / "predict").iterdir())


# The reported payload: a plain string that OmegaConf resolves into a call.
REPORTED = "${{oc.create:{{_target_: shutil.copyfile, src: {src}, dst: {dst}}}}}"


@pytest.mark.parametrize("entry", ["src/eval.py", "src/predict.py", "src/app.py"])
def test_an_interpolation_in_a_checkpoint_runs_nothing_at_eval_and_predict(
    trained_ckpt, toy, tmp_path, entry
):
    path, victim = hostile(
        trained_ckpt, tmp_path, lambda h, a: h["net"].update(dropout=REPORTED.format(**a))
    )
    extra = [f"audio={toy}"] if "predict" in entry else []
    extra += ["launch=false"] if "app" in entry else []  # the page would serve until stopped
    result = run_script(
        entry, *on(toy), f"ckpt_path={path}", f"paths.log_dir={tmp_path}/logs", *extra
    )
    assert_clean_error(result, "hyper_parameters.net.dropout = '${oc.create:", "interpolation")
    assert [line.startswith("error:") for line in result.stderr.splitlines()].count(True) == 1
    assert victim.read_text() == "precious"


def test_lightnings_own_checkpoint_reads_refuse_interpolations_too(trained_ckpt, toy, tmp_path):
    """A resume's `trainer.fit(ckpt_path=...)` and the test of the best checkpoint read the
    file again after the entry point checked it: the trainer's checkpoint plugin reads it the
    same way (weights-only, no interpolation anywhere)."""
    path, victim = hostile(
        trained_ckpt, tmp_path, lambda h, a: h["net"].update(dropout=REPORTED.format(**a))
    )
    trainer = build_trainer(compose_config("train", tmp_path / "run", [*on(toy), *QUIET]))
    with pytest.raises(DataError, match=r"hyper_parameters.net.dropout = .* interpolation"):
        trainer.strategy.load_checkpoint(path)
    assert victim.read_text() == "precious"
    assert trainer.strategy.load_checkpoint(trained_ckpt)["task"] == "multihead"


def interpolated(a: dict) -> str:
    return REPORTED.format(**a)


def put(path: list, value):
    """An edit that sets ckpt[path[0]][path[1]]... = value (a new key where missing)."""

    def edit(ckpt: dict, a: dict) -> None:
        node = ckpt
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(a) if callable(value) else value

    return edit


# Every part of a checkpoint: (edit, the key the refusal names).
ANYWHERE = {
    "net value": (
        put(["hyper_parameters", "net", "dropout"], interpolated),
        "hyper_parameters.net.dropout",
    ),
    "list entry": (
        put(["hyper_parameters", "net", "channels", 1], interpolated),
        "hyper_parameters.net.channels[1]",
    ),
    "head name": (
        put(["hyper_parameters", "heads", 0, "name"], "${oc.env:HOME}"),
        "hyper_parameters.heads[0].name",
    ),
    "head modes": (
        put(["hyper_parameters", "head_modes"], "${oc.decode:'{a: 1}'}"),
        "hyper_parameters.head_modes",
    ),
    "a key": (
        put(["hyper_parameters", "train_means", "${oc.env:HOME}"], 1.0),
        "hyper_parameters.train_means['${oc.env:HOME}']",
    ),
    "class names": (
        put(["VIMHDataModule", "class_names"], {"note_number": ["${nsm_root:}"]}),
        "VIMHDataModule.class_names.note_number[0]",
    ),
    "spectrogram config": (
        put(["VIMHDataModule", "spectrogram_config", "type"], "${oc.select:x}"),
        "VIMHDataModule.spectrogram_config.type",
    ),
    "datamodule state": (
        put(["datamodule_hyper_parameters", "data_dir"], interpolated),
        "datamodule_hyper_parameters.data_dir",
    ),
    "scheduler state": (
        put(["lr_schedulers", 0, "eta_min"], "${now:%H}"),
        "lr_schedulers[0].eta_min",
    ),
    "optimizer state": (
        put(["optimizer_states", 0, "param_groups", 0, "lr"], "${hydra:job.name}"),
        "optimizer_states[0].param_groups[0].lr",
    ),
    "task": (put(["task"], "${nsm_run_id:}"), "task"),
}


@pytest.mark.parametrize("case", sorted(ANYWHERE))
def test_an_interpolation_anywhere_in_a_checkpoint_is_refused_naming_the_key(
    trained_ckpt, tmp_path, case
):
    edit, key = ANYWHERE[case]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "payload.txt").write_text("overwritten")
    ckpt = torch.load(trained_ckpt, weights_only=True)
    edit(ckpt, {"src": tmp_path / "payload.txt", "dst": victim})
    path = tmp_path / "hostile.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(DataError) as info:
        module_from_checkpoint(read_checkpoint(path), path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key} = ") or message.startswith(f"{path}: {key}: ")
    assert "OmegaConf interpolation" in message and "\n" not in message
    assert victim.read_text() == "precious"


# Payloads in the other tasks' own settings: (model config, edit of hyper_parameters, message).
TASK_SETTINGS = {
    "front-end value": (
        "stft_bcresnet_81k",
        put(["net", "frontend", "n_fft"], "${oc.env:HOME}"),
        "hyper_parameters.net.frontend.n_fft = '${oc.env:HOME}' holds an OmegaConf",
    ),
    "front-end target": (
        "stft_bcresnet_81k",
        put(["net", "frontend", "_target_"], "shutil.copyfile"),
        "hyper_parameters.net.frontend._target_ = 'shutil.copyfile' is not allowed",
    ),
    "back-end partial": (
        "stft_bcresnet_81k",
        put(["net", "backend", "_partial_"], True),
        "hyper_parameters.net.backend._partial_ = True is not allowed",
    ),
    "front-end recursive": (
        "stft_bcresnet_81k",
        put(["net", "frontend", "_recursive_"], True),
        "hyper_parameters.net.frontend._recursive_ = True is not allowed",
    ),
    "codec quantizer args": (
        "codec_5k",
        put(["net", "quantizer", "_args_"], ["a", "b"]),
        "hyper_parameters.net.quantizer._args_ = ['a', 'b'] is not allowed",
    ),
    "codec loss sizes": (
        "codec_5k",
        put(["loss_fft_sizes", 0], "${oc.decode:512}"),
        "hyper_parameters.loss_fft_sizes[0] = '${oc.decode:512}' holds",
    ),
    "sequence loss weights": (
        "seq_lstm_40k",
        put(["spectral_loss", "mse"], {"_target_": "os.system", "_args_": ["true"]}),
        "hyper_parameters.spectral_loss.mse._target_ = 'os.system' is not allowed",
    ),
    "sequence frames": (
        "seq_lstm_40k",
        put(["frames", "spectrogram"], "${oc.create:{a: 1}}"),
        "hyper_parameters.frames.spectrogram = '${oc.create:{a: 1}}' holds",
    ),
    "sequence net": (
        "seq_transformer_30k",
        put(["net", "dim"], "64"),
        "hyper_parameters.net.dim = '64': expected an integer",
    ),
}


@pytest.mark.parametrize("case", sorted(TASK_SETTINGS))
def test_front_end_codec_and_sequence_settings_are_checked_the_same_way(tmp_path, case):
    config, edit, message = TASK_SETTINGS[case]
    ckpt = checkpoint_of(build_config(MODEL_DIR / f"{config}.yaml"))
    edit(ckpt["hyper_parameters"], {})
    path = tmp_path / "hostile.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(DataError) as info:
        module_from_checkpoint(read_checkpoint(path), path)
    assert str(info.value).startswith(f"{path}: {message}")


# A network's keyword values have the types its signature names.
TYPED = {
    "a string for a number": (
        put(["net", "dropout"], "0.5"),
        "net.dropout = '0.5': expected a finite number",
    ),
    "not a number": (
        put(["net", "dropout"], float("nan")),
        "net.dropout = nan: expected a finite number",
    ),
    "a string in a list": (
        put(["net", "channels", 1], "16"),
        "net.channels = [8, '16', 20, 28]: expected a list of integers",
    ),
    "a bool for an integer": (
        put(["net", "kernel_size"], True),
        "net.kernel_size = True: expected an integer",
    ),
    "a huge integer": (
        put(["net", "kernel_size"], 2**40),
        "net.kernel_size = 1099511627776: expected an integer",
    ),
    "a list for a string": (put(["net", "pool"], ["max"]), "net.pool = ['max']: expected a string"),
    "an unknown argument": (put(["net", "evil"], 1), "net.evil: ConvNet takes no argument 'evil'"),
    "a component for a list": (
        put(["net", "channels"], {"_target_": "src.models.components.cnn.ConvNet"}),
        "net.channels = {'_target_': 'src.models.components.cnn.ConvNet'}: "
        "expected a list of integers",
    ),
    "an object for a value": (
        put(["net", "dropout"], OmegaConf.create({"x": "${oc.env:HOME}"})),
        "net.dropout = <a DictConfig>: expected a finite number",
    ),
    "an OmegaConf net": (
        lambda h, a: h.update(net=OmegaConf.create(h["net"])),
        "net must be a config mapping with _target_, got <a DictConfig>",
    ),
}


@pytest.mark.parametrize("case", sorted(TYPED))
def test_network_values_must_have_the_types_their_class_names(trained_ckpt, case):
    edit, message = TYPED[case]
    ckpt = read_checkpoint(trained_ckpt)
    edit(ckpt["hyper_parameters"], {})
    with pytest.raises(DataError) as info:
        module_from_checkpoint(ckpt, "x.ckpt")
    assert str(info.value).startswith(f"x.ckpt: hyper_parameters.{message}")


def test_plain_values_that_are_omegaconf_nodes_are_refused_unresolved(trained_ckpt, tmp_path):
    """A checkpoint value is never wrapped in, or read through, an OmegaConf node: a node (only
    possible in memory; weights-only loading refuses one in a file) is refused unread."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "payload.txt").write_text("overwritten")
    ckpt = read_checkpoint(trained_ckpt)
    node = {"x": interpolated({"src": tmp_path / "payload.txt", "dst": victim})}
    ckpt["hyper_parameters"]["train_means"] = OmegaConf.create(node)
    with pytest.raises(DataError, match=r"hyper_parameters.train_means: a DictConfig value"):
        module_from_checkpoint(ckpt, "x.ckpt")
    assert victim.read_text() == "precious"


class CopyOnLoad:
    """Pickles as a call of shutil.copyfile: what loading without weights_only would run."""

    def __init__(self, src, dst):
        self.args = (str(src), str(dst))

    def __reduce__(self):
        return (shutil.copyfile, self.args)


def test_a_pickled_object_is_named_with_the_key_that_holds_it(trained_ckpt, toy, tmp_path):
    cases = [
        (lambda h, a: h["net"].update(dropout=CopyOnLoad(**a)), "net.dropout", "shutil.copyfile"),
        (lambda h, a: h["heads"][1].update(unit=os.system), "heads[1].unit", "posix.system"),
    ]
    for edit, key, name in cases:
        path, victim = hostile(trained_ckpt, tmp_path, edit)
        said = f"(hyper_parameters.{key} holds a Python object ({name}); checkpoints may hold"
        with raises_user_error(DataError, match=re.escape(said)):
            evaluate(eval_cfg(tmp_path, path, toy))
        assert victim.read_text() == "precious"


BROKEN_STATE = {
    "not a mapping": (3, r"state.ckpt: VIMHDataModule = 3 is not a datamodule's saved state"),
    "text for numbers": ({"mean": "x", "std": [1.0]}, r"mean and std must be lists of finite"),
    "a zero std": ({"mean": [0.0], "std": [0.0]}, r"numbers \(std > 0\), got \[0.0\], \[0.0\]"),
    "not a number": ({"mean": [float("nan")], "std": [1.0]}, r"got \[nan\], \[1.0\]"),
    "missing": ({"std": [1.0]}, r"got None, \[1.0\]"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_STATE))
def test_a_broken_datamodule_state_is_one_line_at_eval(trained_ckpt, toy, tmp_path, case):
    """The datamodule's saved statistics are checked like the rest of the file (they were a
    TypeError from torch.tensor)."""
    state, said = BROKEN_STATE[case]
    ckpt = torch.load(trained_ckpt, weights_only=True)
    ckpt["VIMHDataModule"] = state
    path = tmp_path / "state.ckpt"
    torch.save(ckpt, path)
    with raises_user_error(DataError, match=said):
        evaluate(eval_cfg(tmp_path, path, toy))
    assert not (tmp_path / "eval" / "predictions.csv").exists()


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
