"""The entry points as a user meets them: a mistake of the user's gets one clear message and
exit status 1, no traceback (unless HYDRA_FULL_ERROR=1); a wrong model/data pairing is named."""

from __future__ import annotations

import json

from src.errors import ConfigError
from src.train import train
from tests.helpers.entry import assert_clean_error, run_script
from tests.helpers.runs import on, raises_user_error
from tests.helpers.vimh import make_vimh


def run(script: str, tmp_path, *overrides: str, full_error: bool = False):
    where = [
        f"paths.log_dir={tmp_path}/logs",
        f"paths.data_dir={tmp_path}/data",
        f"hydra.run.dir={tmp_path}/run",
    ]
    if script == "generate_vimh.py":
        where = [f"dataset.out_dir={tmp_path}/data"]
    return run_script(script, *where, *overrides, full_error=full_error)


def test_missing_dataset_folder(tmp_path):
    """A mistyped path is never generated (nor its parents made): one line says what to run."""
    typo = tmp_path / "a" / "b" / "nowhere"
    result = run("src/train.py", tmp_path, "data=vimh", f"data.data_dir={typo}")
    assert_clean_error(result, f"data.data_dir={typo}: no such dataset folder", "generate_vimh.py")
    assert not (tmp_path / "a").exists() and not (tmp_path / "data").exists()
    full = run(
        "src/train.py", tmp_path, "data=vimh", f"data.data_dir={tmp_path}/x", full_error=True
    )
    assert full.returncode != 0 and "Traceback" in full.stdout + full.stderr


def test_bad_dataset_json_names_file_and_field(tmp_path):
    folder = make_vimh(tmp_path, name="bad")
    info = json.loads((folder / "vimh_dataset_info.json").read_text())
    info["height"] = "eight"
    (folder / "vimh_dataset_info.json").write_text(json.dumps(info))
    result = run("src/train.py", tmp_path, *on(folder), "debug=fdr")
    assert_clean_error(result, "vimh_dataset_info.json: key 'height' must be int")


def test_generate_and_eval_errors(tmp_path):
    result = run("generate_vimh.py", tmp_path, "synth.params.pitch.step=5")
    assert_clean_error(result, "synth.params.pitch", "does not divide")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    result = run("src/eval.py", tmp_path, f"ckpt_path={garbage}")
    assert_clean_error(result, f"{garbage}: not a readable checkpoint")


def test_sample_rate_comes_from_the_data_and_a_mismatch_is_refused(compose_cfg, toy):
    base = ["experiment=saw_stft_bcresnet", *on(toy), "debug=fdr"]
    _, objects = train(compose_cfg("train", base))
    assert objects["model"].net.frontend.sample_rate == 8000
    assert objects["model"].hparams.sample_rate == 8000
    stated = compose_cfg("train", [*base, "+model.net.frontend.sample_rate=16000"])
    with raises_user_error(ConfigError, match=r"sample_rate=16000 but the dataset .* 8000 Hz"):
        train(stated)


def test_model_and_data_kinds_must_match(compose_cfg, toy):
    image_model_on_audio = compose_cfg("train", ["data=saw_audio", "model=cnn_12k", *on(toy)])
    with raises_user_error(ConfigError, match="takes image input but the data serves audio"):
        train(image_model_on_audio)
    audio_model_on_images = compose_cfg("train", ["model=stft_cnn_77k", *on(toy)])
    with raises_user_error(ConfigError, match="takes audio input but the data serves image"):
        train(audio_model_on_images)
