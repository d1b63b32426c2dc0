"""The demo page's logic without a browser (`src/demo/`): what it shows for each task, and a
message, not a crash, for what it cannot use (the browser drives it in test_app_browser.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from omegaconf import OmegaConf

from src.app import serve
from src.demo.core import Session, check_upload, find_checkpoints
from src.errors import DataError
from src.paths import CONFIG_DIR
from src.predict import predict
from src.utils.runs import CHECKPOINTS
from tests.helpers.app import app_overrides, train_tiny_saw
from tests.helpers.models import checkpoint_of
from tests.helpers.runs import on


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return train_tiny_saw(tmp_path_factory.mktemp("app"))


@pytest.fixture
def session(compose_cfg, tiny, one_thread) -> Session:
    folder, ckpt = tiny
    _, objects = serve(compose_cfg("app", app_overrides(folder, ckpt)))
    return objects["session"]


def tone(path: Path, seconds: float, rate: int = 16000, freq: float = 440.0) -> Path:
    t = np.arange(round(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def test_the_page_shows_what_predict_says_and_hears_the_refined_estimate(
    session, compose_cfg, tiny, tmp_path
):
    folder, ckpt = tiny
    label = session.records()[3]
    assert label.startswith("3: pitch=")
    wav, message = session.record(label)
    assert message == f"test record {label}"
    stored = sf.read(str(wav), dtype="float32")[0]
    shown = session.answer(wav, refine=True)
    assert not shown.message.startswith("error"), shown.message
    assert shown.header == ["parameter", "unit", "predicted", "confidence", "refined"]
    assert [r[:2] for r in shown.rows] == [["pitch", "midi"], ["level", "dB"], ["decay", "dB/s"]]
    # The command line on the same file predicts the same values.
    cfg = compose_cfg("predict", [*on(folder), f"ckpt_path={ckpt}", f"audio={wav}"], out="cli")
    _, cli = predict(cfg)
    for row in shown.rows:
        assert float(row[2]) == pytest.approx(float(cli["values"][row[0]][0]), rel=1e-3)
    pitch = shown.rows[0][3]  # a classification head: its probability and 90% interval
    p = float(pitch.split(";")[0].removeprefix("p="))
    lo, hi = (float(v) for v in pitch.split("[")[1].rstrip("]").split(","))
    assert 0 < p <= 1 and 45 <= lo <= float(shown.rows[0][2]) + 3 and hi <= 69
    players = dict(shown.audio)
    assert list(players) == [
        "input, as the model heard it",
        "resynthesis of the prediction",
        "resynthesis of the refined estimate",
    ]
    rate, heard = players["input, as the model heard it"]
    assert rate == 8000 and np.abs(heard - stored).max() < 1e-3
    assert all(len(a) == 8000 and np.abs(a).max() > 0.01 for _, a in players.values())
    for path in shown.images.values():
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
    refined = float(shown.rows[0][4])
    assert abs(refined - float(label.split("pitch=")[1].split(",")[0])) < 0.5


def test_bad_input_is_a_message_and_the_page_keeps_serving(session, tmp_path, toy, trained_ckpt):
    (tmp_path / "junk.wav").write_bytes(b"not a sound at all")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    sf.write(tmp_path / "long.wav", np.zeros(600 * 8000 + 1, np.int16), 8000)
    cases = {
        None: "no sound given",
        tmp_path / "junk.wav": "junk.wav: not a sound file this page can read",
        tmp_path / "empty.wav": "empty.wav: the file holds no audio samples",
        tmp_path / "long.wav": "long.wav: 600.0 s long; the page takes sounds of at most 60 s",
    }
    for sound, expected in cases.items():
        shown = session.answer(sound)
        assert shown.message.startswith(f"error: {expected}"), shown.message
        assert shown.rows == [] and shown.audio == {}
    with pytest.raises(DataError, match=r"long\.wav: 600\.0 s long"):
        check_upload(tmp_path / "long.wav", 60)
    # A checkpoint of another estimation task (the toy's heads), and a file that is none:
    # a message, and the loaded checkpoint stays.
    before = session.ckpt_path
    message = session.load(trained_ckpt)
    assert message.startswith("error: ") and "predicts" in message and "labels" in message
    assert session.load(tmp_path / "junk.wav").startswith("error: ")
    assert session.ckpt_path == before
    good = session.answer(tone(tmp_path / "a.wav", 1.0))
    assert not good.message.startswith("error") and len(good.rows) == 3


def test_a_codec_checkpoint_shows_original_and_decoded_with_the_bitrate(
    compose_cfg, tiny, tmp_path, one_thread
):
    from src.models.codec_module import CodecModule, neg_snr_db

    net = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / "codec_5k.yaml").net)
    codec = CodecModule(net=net, input_shape=[1, 4096], sample_rate=8000)
    path = tmp_path / "codec.ckpt"
    torch.save(checkpoint_of(codec), path)
    folder, _ = tiny
    cfg = compose_cfg("app", app_overrides(folder, path, "codec_seconds=1.5"))
    session = serve(cfg)[1]["session"]
    assert session.demo.kind == "codec" and session.records() == []
    shown = session.answer(tone(tmp_path / "long_tone.wav", 3.0))
    assert shown.rows[0] == ["bitrate", "kbps", "3"]  # 12 bits a frame, 250 frames/s
    (_, original), (_, decoded) = shown.audio["original"], shown.audio["decoded"]
    assert len(original) == len(decoded) == 12000  # the first 1.5 s at 8 kHz
    snr = -float(neg_snr_db(torch.from_numpy(decoded)[None], torch.from_numpy(original)[None]))
    assert float(shown.rows[1][2]) == pytest.approx(snr, abs=0.01)
    assert list(shown.images) == ["original and decoded"]


def test_a_sequence_checkpoint_shows_the_phrase_one_step_and_rollout(
    compose_cfg, tiny, tmp_path, one_thread
):
    from src.data.frames import recipe_frames
    from src.models.sequence_module import SequenceModule

    cfg = compose_cfg("train", ["experiment=seq_lstm", "model=seq_lstm_40k"], out="seq")
    spec = recipe_frames(cfg.data)
    model = SequenceModule(
        net=OmegaConf.to_container(cfg.model.net, resolve=True), **spec.model_kwargs()
    )
    path = tmp_path / "seq.ckpt"
    torch.save(checkpoint_of(model), path)
    folder, _ = tiny
    session = serve(compose_cfg("app", app_overrides(folder, path, "griffin_lim_iters=2")))[1][
        "session"
    ]
    assert session.demo.kind == "sequence"
    shown = session.answer(tone(tmp_path / "phrase.wav", 2.0))
    frames = 1 + 16000 // 256  # 2 s at 8 kHz, hop 256
    assert shown.message.startswith(f"phrase.wav: {frames} frames")
    assert [r[0] for r in shown.rows] == ["one-step", "rollout"]
    assert all(math.isfinite(float(r[2])) and float(r[2]) >= 0 for r in shown.rows)
    assert list(shown.audio) == ["phrase (its frames, heard again)", "one-step", "rollout"]
    assert {len(a) for _, a in shown.audio.values()} == {(frames - 1) * 256}
    short = session.answer(tone(tmp_path / "short.wav", 0.5))
    assert short.message.startswith("error: short.wav: 0.50 s is too short")


def test_the_picker_finds_run_checkpoints_newest_first(tmp_path, compose_cfg, tiny):
    import os

    old, new = (tmp_path / "logs" / r / "runs" / "x" / CHECKPOINTS for r in ("train", "eval"))
    for i, folder in enumerate((old, new)):
        folder.mkdir(parents=True)
        (folder / "last.ckpt").write_bytes(b"x")
        os.utime(folder / "last.ckpt", (1000 + i, 1000 + i))
    (tmp_path / "logs" / "stray.ckpt").write_bytes(b"x")
    assert find_checkpoints(tmp_path / "logs") == [new / "last.ckpt", old / "last.ckpt"]
    assert find_checkpoints(tmp_path / "none") == []
    folder, _ = tiny
    cfg = compose_cfg("app", app_overrides(folder, None))
    cfg.paths.log_dir = str(tmp_path / "none")  # (compose_cfg sets it after the overrides)
    with pytest.raises(Exception, match="no checkpoint under"):
        serve(cfg)
    # The newest found does not load (it is no checkpoint): the page opens and says why.
    cfg.paths.log_dir = str(tmp_path / "logs")
    session = serve(cfg)[1]["session"]
    assert session.demo is None
    assert session.answer(None).message.startswith("error: no checkpoint is loaded")
    message = session.load(new / "last.ckpt")
    assert message.startswith("error: ") and "not a readable checkpoint" in message
