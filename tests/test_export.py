"""Export (src/export.py, src/deploy/): the exported files give the checkpoint's predictions.

Parity is measured on the test split of a small generated saw dataset: the checkpoint's
predictions come from its stored images (or stored waveforms for waveform models), the exported
graph's from the same notes' stored samples (or images). Models are untrained: parity needs
weights, not skill; batch-norm statistics are stirred so a dropped layer would show.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import hydra
import numpy as np
import onnxruntime
import pytest
import soundfile as sf
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from src.data.datamodule import VIMHDataModule
from src.data.spec import DataSpec
from src.data.vimh.classes import categorical_spec
from src.deploy.exporter import export_checkpoint
from src.deploy.graphs import PowerImager
from src.deploy.runtime import ExportedEstimator, onnx_session
from src.errors import ConfigError, DataError
from src.export import export
from src.generation.rebuild import imager_from_info
from src.imaging import SpectrogramImager
from src.models.codec_module import CodecModule
from src.models.tasks import module_from_checkpoint, read_checkpoint
from src.paths import PROJECT_ROOT
from src.predict import predict
from src.synth.saw import SawSynth
from src.train import train
from tests.conftest import compose_config
from tests.helpers.entry import assert_clean_error, run_script
from tests.helpers.export import untrained_checkpoint
from tests.helpers.models import MODEL_DIR, checkpoint_of
from tests.helpers.runs import QUIET, on, raises_user_error
from tests.helpers.synth_data import make_saw_dataset

TOL = 1e-4


@pytest.fixture(scope="module")
def saw(tmp_path_factory) -> Path:
    """A 64-note saw dataset with stored audio (its test split: 6 notes)."""
    return make_saw_dataset(tmp_path_factory.mktemp("export") / "data", size=64, batch_size=64)


@pytest.fixture(scope="module")
def trained_export(saw, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, model.onnx): the default model trained one epoch on `saw`, exported with
    src/export.py's task (waveform input)."""
    root = tmp_path_factory.mktemp("trained_export")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overrides = [
            *on(saw),
            "model=cnn_12k",
            "trainer.max_epochs=1",
            "data.batch_size=16",
            "callbacks.lr_monitor=null",
            "logger=none",
            *QUIET,
        ]
        _, objects = train(compose_config("train", root / "train", overrides))
        ckpt = Path(objects["trainer"].checkpoint_callback.best_model_path)
        cfg = compose_config("export", root / "export", [f"ckpt_path={ckpt}"])
        _, objects = export(cfg)
    finally:
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
    assert [p.name for p in objects["files"]] == ["model.onnx", "model.json"]
    return ckpt, objects["files"][0]


def saw_wavs(folder: Path, rate: int = 8000) -> list[Path]:
    """Three saw notes as 16-bit WAVs, away from the training grid."""
    values = {
        "pitch": torch.tensor([47.5, 58.2, 66.0], dtype=torch.float64),
        "level": torch.tensor([-3.0, -10.0, -16.0], dtype=torch.float64),
        "decay": torch.tensor([15.0, 30.0, 44.0], dtype=torch.float64),
        "attack": torch.full((3,), 0.005, dtype=torch.float64),
    }
    notes = SawSynth().render(values, rate, rate, torch.Generator().manual_seed(2)).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"note{i}.wav" for i in range(len(notes))]
    for path, note in zip(paths, notes):
        sf.write(path, note, rate, subtype="PCM_16")
    return paths


def split_of(folder: Path, audio: bool) -> torch.Tensor:
    dm = VIMHDataModule(folder, representation="audio" if audio else "image")
    return torch.from_numpy(np.asarray(dm._split_inputs("test")).copy())


@torch.no_grad()
def checkpoint_outputs(ckpt_path: Path, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The checkpoint's values, classes and raw outputs per head, as predict computes them."""
    ckpt = read_checkpoint(ckpt_path)
    module = module_from_checkpoint(ckpt, ckpt_path)
    if x.dtype == torch.uint8:
        state = ckpt["VIMHDataModule"]
        mean = torch.tensor(state["mean"]).view(1, -1, 1, 1)
        x = (x.float() - mean) / torch.tensor(state["std"]).view(1, -1, 1, 1)
    raw = module(x)
    out = {}
    for name, (v, c) in module.decode(raw).items():
        out[name], out[f"{name}_class"], out[f"{name}_raw"] = v.numpy(), c.numpy(), raw[name]
        probs = module.heads[name].class_probabilities(raw[name])
        if probs is not None:
            out[f"{name}_prob"] = probs.gather(1, c[:, None])[:, 0].numpy()
    return {k: np.asarray(v) for k, v in out.items()}


def run_exported(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    names = json.loads(path.with_suffix(".json").read_text())["runtime"]["outputs"]
    if path.suffix == ".onnx":
        got = onnx_session(path, threads=1).run(None, {"input": x})
    else:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
            out = torch.jit.load(str(path))(torch.from_numpy(x))
            got = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
    return dict(zip(names, got))


def assert_parity(want: dict[str, np.ndarray], got: dict[str, np.ndarray], what: str) -> None:
    assert set(got) == set(want), (what, sorted(got), sorted(want))
    for key, w in want.items():
        if key.endswith("_class"):
            np.testing.assert_array_equal(got[key], w, err_msg=f"{what}: {key}")
        else:
            np.testing.assert_allclose(got[key], w, rtol=0, atol=TOL, err_msg=f"{what}: {key}")


def test_the_waveform_graph_images_notes_as_the_dataset_imager_does():
    """Two resolutions, mel and log axes: the same pixels but for float32 rounding ties (one
    level, at most a few pixels in 10^4), on notes from silence to full scale."""
    imager = SpectrogramImager(
        height=32,
        width=32,
        sample_rate=8000,
        n_samples=8000,
        f_min=40.0,
        channels=[
            {"kind": "power", "scale": "mel", "n_fft": 256},
            {"kind": "power", "scale": "log", "n_fft": 1024},
        ],
    )
    g = torch.Generator().manual_seed(3)
    n = 48
    values = {
        "pitch": 36 + 48 * torch.rand(n, generator=g, dtype=torch.float64),
        "level": -60 * torch.rand(n, generator=g, dtype=torch.float64),
        "decay": 5 + 50 * torch.rand(n, generator=g, dtype=torch.float64),
        "attack": torch.full((n,), 0.005, dtype=torch.float64),
    }
    notes = SawSynth().render(values, 8000, 8000, g).float()
    want = imager(notes).float()
    got = PowerImager(imager)(notes)
    diff = (got - want).abs()
    assert want.std() > 30  # the notes fill the pixel range
    assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3, int((diff > 0).sum())


@pytest.mark.parametrize(
    ("model", "overrides", "inputs"),
    [
        ("cnn_12k", {}, ("waveform",)),
        ("vit_28k", {}, ("image",)),
        ("lstm_23k", {}, ("image",)),
        ("gru_33k", {}, ("image",)),
        (
            "stft_cnn_77k",
            {"net.frontend.trainable_stft": True, "net.frontend.trainable_mel": True},
            ("waveform",),
        ),
    ],
)
def test_exported_models_give_the_checkpoints_predictions(
    saw, tmp_path, one_thread, model, overrides, inputs
):
    """ONNX Runtime and TorchScript equal the checkpoint within 1e-4 on the test split, for
    every family: the CNN from the waveform (imaging inside the graph), the ViT and the RNNs
    from the image, the trainable front-end from the waveform."""
    audio_model = model.startswith("stft")
    ckpt = untrained_checkpoint(
        saw, model, tmp_path / "m.ckpt", "audio" if audio_model else "image", **overrides
    )
    notes = split_of(saw, audio=True)
    notes = notes.reshape(notes.shape[0], -1)  # (N, n_samples)
    images = None if audio_model else split_of(saw, audio=False)
    want = checkpoint_outputs(ckpt, notes[:, None] if audio_model else images)
    assert np.ptp(want["pitch_raw"], axis=0).min() > 1e-3  # the notes get different outputs
    for fmt in ("onnx", "torchscript"):
        for kind in inputs:
            files = export_checkpoint(ckpt, tmp_path / f"{fmt}_{kind}", fmt, kind)
            x = notes.numpy() if kind == "waveform" else images.numpy()
            assert_parity(want, run_exported(files[0], x), f"{model} {fmt} {kind}")


def test_the_codec_encoder_and_decoder_export(tmp_path, one_thread):
    """Codes equal the checkpoint's; the decoded waveform within 1e-4."""
    torch.manual_seed(0)
    cfg = OmegaConf.load(MODEL_DIR / "codec_5k.yaml")
    module = hydra.utils.instantiate(cfg, input_shape=[1, 4000], sample_rate=16000)
    assert isinstance(module, CodecModule)
    module.train()
    x = 0.3 * torch.randn(3, 1, 4000, generator=torch.Generator().manual_seed(1))
    module(x)  # one training pass initialises the codebooks from data
    module.eval()
    path = tmp_path / "codec.ckpt"
    torch.save(checkpoint_of(module), path)
    codes = module.net.encode(x)
    wave = module.net.decode(codes, 4000)[:, 0]
    assert codes.unique().numel() > 4
    for fmt in ("onnx", "torchscript"):
        enc, _, dec, _ = export_checkpoint(path, tmp_path / fmt, fmt)
        got_codes = run_exported(enc, x[:, 0].numpy())["codes"]
        np.testing.assert_array_equal(got_codes, codes.numpy())
        got_wave = run_exported(dec, codes.numpy())["waveform"]
        np.testing.assert_allclose(got_wave, wave.numpy(), rtol=0, atol=TOL)
        about = json.loads(dec.with_suffix(".json").read_text())
        assert about["part"] == "decoder" and about["codebook_sizes"] == [64, 64]


def test_export_refuses_what_it_cannot_export(saw, tmp_path):
    ckpt = untrained_checkpoint(saw, "cnn_12k", tmp_path / "m.ckpt")
    export_checkpoint(ckpt, tmp_path / "out", "torchscript", "image")
    with raises_user_error(ConfigError, "exists; export never replaces"):
        export_checkpoint(ckpt, tmp_path / "out", "torchscript", "image")
    with raises_user_error(ConfigError, "format must be one of"):
        export_checkpoint(ckpt, tmp_path / "x", "tflite", "image")
    audio = untrained_checkpoint(saw, "stft_cnn_77k", tmp_path / "a.ckpt", "audio")
    with raises_user_error(ConfigError, "takes waveforms .* export input=waveform"):
        export_checkpoint(audio, tmp_path / "a", "onnx", "image")
    # A phase channel has no real-valued graph here: refused, naming it, before anything runs.
    state = torch.load(ckpt, weights_only=True)
    cfg = state["VIMHDataModule"]["spectrogram_config"]
    cfg["channels"] = [{**cfg["channels"][0], "kind": "ifreq", "label": "if"}]
    torch.save(state, tmp_path / "phase.ckpt")
    with raises_user_error(ConfigError, "channel 'if' is of kind ifreq.*export input=image"):
        export_checkpoint(tmp_path / "phase.ckpt", tmp_path / "p", "onnx", "waveform")
    # ... and at the command line: one line, exit status 1, no file.
    result = run_script(
        "src/export.py",
        f"ckpt_path={tmp_path / 'phase.ckpt'}",
        f"out={tmp_path / 'cli'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_clean_error(result, "channel 'if' is of kind ifreq", "export input=image")
    assert not (tmp_path / "cli").exists() or not any((tmp_path / "cli").iterdir())
    state["VIMHDataModule"]["std"] = [0.0]
    torch.save(state, tmp_path / "bad.ckpt")
    with raises_user_error(DataError, r"VIMHDataModule.mean and .std must be 1 finite numbers"):
        export_checkpoint(tmp_path / "bad.ckpt", tmp_path / "b", "onnx", "image")
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_the_sidecar_says_how_to_use_the_model(saw, trained_export):
    ckpt, model = trained_export
    about = json.loads(model.with_suffix(".json").read_text())
    info_imager = imager_from_info(VIMHDataModule(saw).info)
    assert about["input"] == {
        **about["input"],
        "kind": "waveform",
        "sample_rate": 8000,
        "n_samples": 8000,
        "shape": ["batch", 8000],
    }
    imaging = about["imaging"]
    assert {k: imaging[k] for k in info_imager.config()} == info_imager.config()
    assert imaging["hop_length"] == info_imager.hop_length and imaging["inside_graph"]
    state = torch.load(ckpt, weights_only=True)["VIMHDataModule"]
    assert about["normalisation"]["mean"] == state["mean"]
    heads = {h["name"]: h for h in about["heads"]}
    assert list(heads) == ["pitch", "level", "decay"]
    assert heads["pitch"]["mode"] == "offset" and heads["pitch"]["continuous"]
    assert heads["pitch"]["unit"] == "midi" and heads["pitch"]["class_values"][:2] == [45.0, 51.0]
    assert heads["level"]["mode"] == "regression" and heads["level"]["outputs"]["prob"] is None
    assert about["runtime"]["outputs"][:4] == ["pitch", "pitch_class", "pitch_prob", "pitch_raw"]
    assert about["source"]["sha256"] and about["family"] == "ConvNet"
    assert "_target_" not in model.with_suffix(".json").read_text()


def test_an_exported_model_refuses_a_bad_sidecar(trained_export, tmp_path):
    _, model = trained_export
    mine = tmp_path / "model.onnx"
    shutil.copy(model, mine)
    about = json.loads(model.with_suffix(".json").read_text())
    about["heads"][0]["spec"]["step"] = "${oc.env:HOME}"
    mine.with_suffix(".json").write_text(json.dumps(about))
    with raises_user_error(DataError, r"model.json: heads\[0\].spec.step = .* interpolation"):
        ExportedEstimator(mine)
    mine.with_suffix(".json").write_text("{")
    with raises_user_error(DataError, "not a readable JSON sidecar"):
        ExportedEstimator(mine)


def csv_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_predict_from_the_exported_model_writes_the_checkpoints_csv(
    saw, trained_export, compose_cfg, tmp_path, one_thread
):
    ckpt, model = trained_export
    wavs = saw_wavs(tmp_path / "wavs")[0].parent
    common = [*on(saw), f"audio={wavs}", "resynthesize=false", "figures=false"]
    rows = {}
    for key, source in (("ckpt_path", ckpt), ("onnx_path", model)):
        cfg = compose_cfg("predict", [*common, f"{key}={source}"], out=key)
        predict(cfg)
        rows[key] = csv_rows(Path(cfg.paths.output_dir) / "predictions.csv")
    want, got = rows["ckpt_path"], rows["onnx_path"]
    assert len(want) == 3 and list(got[0]) == list(want[0])
    for w, g in zip(want, got):
        for column, value in w.items():
            if column.endswith("_class") or column in ("index", "file"):
                assert g[column] == value, column
            else:
                assert float(g[column]) == pytest.approx(float(value), abs=TOL), column
    assert len({r["pitch"] for r in want}) == 3  # the notes get different values
    with raises_user_error(ConfigError, "not both"):
        predict(compose_cfg("predict", [*common, f"ckpt_path={ckpt}", f"onnx_path={model}"]))
    with raises_user_error(ConfigError, "predict needs ckpt_path=<checkpoint> or onnx_path="):
        predict(compose_cfg("predict", common, out="neither"))


def deploy_snippet() -> str:
    """The Python block of docs/deploy.md's section on using a model without this project."""
    text = (PROJECT_ROOT / "docs" / "deploy.md").read_text()
    section = text.split("## Using it from Python without this repository")[1]
    return section.split("```python\n")[1].split("```")[0]


def test_a_python_that_cannot_import_this_project_gets_the_checkpoints_predictions(
    saw, trained_export, tmp_path
):
    """The acceptance test: docs/deploy.md's snippet, in an isolated interpreter without site
    packages (so without the project's editable install) given only onnxruntime's and numpy's
    folder, reads the WAVs and matches the checkpoint's predictions on them within 1e-4."""
    ckpt, model = trained_export
    wavs = saw_wavs(tmp_path / "wavs")
    samples = torch.stack([torch.from_numpy(sf.read(w, dtype="float32")[0]) for w in wavs])
    images = imager_from_info(VIMHDataModule(saw).info)(samples)
    want = checkpoint_outputs(ckpt, images)
    script = tmp_path / "use_model.py"
    script.write_text(deploy_snippet())
    site = str(Path(onnxruntime.__file__).resolve().parents[1])
    runner = (
        "import importlib.util, runpy, sys\n"
        f"sys.path.append({site!r})\n"
        "assert importlib.util.find_spec('src') is None, 'the project is importable'\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "assert 'torch' not in sys.modules and 'src' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for i, wav in enumerate(wavs):
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-c", runner, str(script), str(model), str(wav)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**env, "OMP_NUM_THREADS": "1"},
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        got = json.loads(result.stdout)
        for head in ("pitch", "level", "decay"):
            assert got[head]["class"] == int(want[f"{head}_class"][i]), head
            assert abs(got[head]["value"] - float(want[head][i])) <= TOL, head
    # Without the escape hatch the same interpreter cannot import the project at all.
    blocked = subprocess.run(
        [sys.executable, "-I", "-S", "-c", "import src"], capture_output=True, cwd=tmp_path
    )
    assert blocked.returncode != 0 and b"ModuleNotFoundError" in blocked.stderr


def test_a_nominal_head_carries_its_class_names(saw, tmp_path):
    """A nominal head (a word, an instrument) stays a classifier: the sidecar names its
    classes and the graph gives each class's probability; names that do not fit are refused."""
    heads = [*VIMHDataModule(saw).heads, categorical_spec("word", 3)]
    spec = DataSpec("image", (1, 32, 32), 8000, heads)
    torch.manual_seed(0)
    module = hydra.utils.instantiate(
        OmegaConf.load(MODEL_DIR / "cnn_12k.yaml"), **spec.model_kwargs()
    ).eval()
    state = torch.load(untrained_checkpoint(saw, "cnn_12k", tmp_path / "m.ckpt"))
    state = state["VIMHDataModule"] | {"class_names": {"word": ["yes", "no", "up"]}}
    torch.save({**checkpoint_of(module), "VIMHDataModule": state}, tmp_path / "word.ckpt")
    model, sidecar = export_checkpoint(tmp_path / "word.ckpt", tmp_path / "out", "onnx", "image")
    word = json.loads(sidecar.read_text())["heads"][3]
    assert (word["name"], word["mode"], word["class_names"]) == (
        "word",
        "classification",
        ["yes", "no", "up"],
    )
    exported = ExportedEstimator(model)
    assert exported.class_names == {"word": ("yes", "no", "up")}
    images = split_of(saw, audio=False)
    values, classes, probs = exported.predict(images, lambda x: x, 8)["word"]
    want = checkpoint_outputs(tmp_path / "word.ckpt", images)
    np.testing.assert_array_equal(classes.numpy(), want["word_class"])
    np.testing.assert_allclose(probs.numpy(), want["word_prob"], atol=TOL)
    assert (probs > 1 / 3).all() and torch.equal(values, classes.double())
    state["class_names"] = {"word": ["yes", "no"]}
    torch.save({**checkpoint_of(module), "VIMHDataModule": state}, tmp_path / "short.ckpt")
    with raises_user_error(DataError, "VIMHDataModule.class_names.word must name its 3 classes"):
        export_checkpoint(tmp_path / "short.ckpt", tmp_path / "short", "onnx", "image")
