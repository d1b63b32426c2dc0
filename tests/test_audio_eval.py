"""Hear and measure a trained model: the resynthesis report of src/eval.py (callbacks=
eval_audio) and src/predict.py on WAV/FLAC files this test renders itself at another sample
rate, both with a small model trained here on an easy generated saw dataset."""

from __future__ import annotations

import csv
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from src.data.vimh import INFO_FILENAME, VIMHDataset
from src.errors import ConfigError, DataError
from src.eval import evaluate
from src.metrics.baselines import BASELINES
from src.predict import predict
from src.synth.saw import SawSynth
from tests.helpers.runs import on, raises_user_error, train_saw_checkpoint
from tests.helpers.vimh import make_vimh


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset folder, best checkpoint) of cnn_12k trained a few epochs on easy saw notes."""
    root = tmp_path_factory.mktemp("audio_eval")
    return train_saw_checkpoint(root, size=1000, epochs=6, dataset_batch=128)


def test_eval_writes_the_resynthesis_report(compose_cfg, trained, one_thread):
    folder, ckpt = trained
    cfg = compose_cfg(
        "eval",
        [
            *on(folder),
            f"ckpt_path={ckpt}",
            "callbacks=eval_audio",
            "callbacks.rich_progress_bar=null",
            "callbacks.resynthesis.max_records=100",
            "callbacks.resynthesis.n_listen=2",
            "logger=none",
        ],
    )
    _, objects = evaluate(cfg)
    out = Path(cfg.paths.output_dir) / "resynthesis"
    summary = json.loads((out / "resynthesis_summary.json").read_text())
    assert summary["records"] == 100 and summary["target"] == "stored"
    s = summary["summary"]
    assert set(s) == {"model", "oracle", *BASELINES}
    assert s["oracle"]["mss"]["mean"] < 1e-6 and s["oracle"]["lsd_db"]["mean"] < 1e-6
    # A trained model sounds closer to the truth than the train mean and chance do; the true
    # class at its grid value is off only by the 8-bit code's rounding here (grid sampling).
    for metric in ("mss", "lsd_db", "mfcc_dtw", "mrstft", "centroid_err_hz"):
        for worse in ("train_mean", "chance"):
            assert s["model"][metric]["median"] < s[worse][metric]["median"], (metric, worse)
    assert 0 < s["oracle_class"]["abs_err_pitch"]["mean"] < 0.1
    assert s["oracle_class"]["mss"]["median"] < 0.5 * s["train_mean"]["mss"]["median"]
    with open(out / "resynthesis_records.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == (2 + len(BASELINES)) * 100
    assert {"abs_err_pitch", "pred_decay", "snr_db", "mss", "f0_err_cents"} <= set(rows[0])
    # The report's model values are the module's decoded predictions (natural units).
    with open(Path(cfg.paths.output_dir) / "predictions.csv") as f:
        from_eval = [float(r["pitch_pred"]) for r in csv.DictReader(f)][:100]
    ours = np.array([float(r["pred_pitch"]) for r in rows if r["predictor"] == "model"])
    np.testing.assert_allclose(ours, from_eval, rtol=1e-5)
    for i in range(2):
        for kind in ("target", "model"):
            path = out / f"record_{i:03d}_{kind}.wav"
            with wave.open(str(path)) as w:
                assert (w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 8000, 8000)
        assert (out / f"record_{i:03d}.png").stat().st_size > 0
    assert not (out / "record_002.png").exists()
    assert (out / "resynthesis_metrics.png").stat().st_size > 0
    result = next(c for c in objects["trainer"].callbacks if hasattr(c, "result")).result
    assert result.n_records == 100


def render_notes(values: dict[str, list[float]], sample_rate: int) -> torch.Tensor:
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
    tensors["attack"] = torch.full_like(tensors["pitch"], 0.005)
    return SawSynth().render(tensors, sample_rate, sample_rate, torch.Generator().manual_seed(7))


def test_predict_recovers_known_parameters_at_another_rate(
    compose_cfg, trained, tmp_path, one_thread
):
    folder, ckpt = trained
    truth = {
        "pitch": [45.0, 51.0, 57.0, 63.0, 69.0, 57.0],
        "level": [0.0, -6.0, -12.0, -18.0, -6.0, -12.0],
        "decay": [12.0, 30.0, 48.0, 30.0, 12.0, 48.0],
    }
    sr = 22050
    notes = render_notes(truth, sr).numpy()
    wavs = tmp_path / "mine"
    wavs.mkdir()
    for i in range(4):
        sf.write(wavs / f"note{i}.wav", notes[i], sr, subtype="PCM_16")
    sf.write(wavs / "stereo.flac", np.stack([notes[4], notes[4]], axis=1), sr)
    late = np.concatenate([np.zeros(sr // 5, np.float32), notes[5]])
    sf.write(wavs / "z_late.wav", late, sr)
    cfg = compose_cfg(
        "predict", [*on(folder), f"ckpt_path={ckpt}", f"audio={wavs}", "onset=detect"]
    )
    _, objects = predict(cfg)
    ds = VIMHDataset(folder)
    names = [Path(f["file"]).name for f in objects["files"]]
    assert names == [
        "note0.wav",
        "note1.wav",
        "note2.wav",
        "note3.wav",
        "stereo.flac",
        "z_late.wav",
    ]
    assert objects["files"][5]["onset_s"] == pytest.approx(0.2, abs=0.006)
    for spec in ds.params:
        want = spec.class_index(np.array(truth[spec.name]))
        got = objects["classes"][spec.name]
        assert np.abs(got - want).max() <= 1, (spec.name, got, want)
    out = Path(cfg.paths.output_dir)
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and float(rows[0]["pitch"]) == pytest.approx(
        objects["values"]["pitch"][0]
    )
    info = sf.info(str(out / "004_stereo_resynth.wav"))
    assert (info.samplerate, info.frames, info.subtype) == (8000, 8000, "PCM_16")
    assert (out / "005_z_late.png").stat().st_size > 0


def test_eval_refine_adds_refined_rows_closer_to_the_notes(compose_cfg, trained, one_thread):
    folder, ckpt = trained
    base = [*on(folder), f"ckpt_path={ckpt}", "callbacks.rich_progress_bar=null", "logger=none"]
    cfg = compose_cfg("eval", [*base, "refine=true"])
    with raises_user_error(ConfigError, match="callbacks=eval_audio"):
        evaluate(cfg)
    cfg = compose_cfg(
        "eval",
        [
            *base,
            "refine=true",
            "refiner.generations=15",
            "callbacks=eval_audio",
            "callbacks.resynthesis.max_records=12",
            "callbacks.resynthesis.n_listen=0",
            "callbacks.resynthesis.baselines=false",
        ],
        out="refine",
    )
    evaluate(cfg)
    out = Path(cfg.paths.output_dir) / "resynthesis"
    s = json.loads((out / "resynthesis_summary.json").read_text())["summary"]
    assert set(s) == {"model", "refined", "oracle"}
    for metric in ("mss", "lsd_db"):
        assert s["refined"][metric]["median"] < s["model"][metric]["median"], metric
    assert s["refined"]["abs_err_pitch"]["mean"] < 0.1


def test_predict_refines_recorded_notes_to_their_pitch(compose_cfg, trained, tmp_path, one_thread):
    """Real recordings (the oboe and string samples of the TimGM6mb SoundFont inside
    pretty_midi, labelled with the pitch they were recorded at): the network of a coarse
    saw task is semitones off; refine=true brings every note within 0.3 semitone and writes
    the refined values, notes and figures beside the network's."""
    from src.audio.soundfont import bundled_bank, read_samples

    bank = bundled_bank()
    if bank is None:
        pytest.skip("pretty_midi (the dev extra) is not installed")
    folder, ckpt = trained
    wavs = tmp_path / "recorded"
    wavs.mkdir()
    labels = {}
    for sample in read_samples(bank):
        if sample.name in ("Oboe C#", "Oboe F#", "Str1C4 L"):
            name = sample.name.replace(" ", "_").replace("#", "s")
            sf.write(wavs / f"{name}.wav", sample.audio, sample.sample_rate)
            labels[f"{name}.wav"] = sample.pitch
    assert sorted(labels.values()) == [60.0, 61.0, 66.0]
    cfg = compose_cfg(
        "predict",
        [
            *on(folder),
            f"ckpt_path={ckpt}",
            f"audio={wavs}",
            "onset=detect",
            "refine=true",
            "refiner.generations=20",
        ],
    )
    _, objects = predict(cfg)
    files = [Path(f["file"]).name for f in objects["files"]]
    truth = np.array([labels[f] for f in files])
    refined = objects["refined"].values["pitch"]
    assert np.abs(refined - truth).max() < 0.3, (refined, truth)
    assert np.abs(objects["values"]["pitch"] - truth).max() > 0.9  # the grid network alone
    out = Path(cfg.paths.output_dir)
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    np.testing.assert_allclose([float(r["pitch_refined"]) for r in rows], refined, rtol=1e-6)
    assert all(float(r["refine_loss_end"]) <= float(r["refine_loss_start"]) for r in rows)
    for i, name in enumerate(files):
        stem = f"{i:03d}_{Path(name).stem}"
        assert (out / f"{stem}_refined.wav").is_file() and (out / f"{stem}.png").is_file()


def test_predict_refuses_what_it_cannot_use(compose_cfg, trained, tmp_path):
    folder, ckpt = trained
    (tmp_path / "empty").mkdir()
    cfg = compose_cfg("predict", [*on(folder), f"ckpt_path={ckpt}", f"audio={tmp_path}/empty"])
    with raises_user_error(DataError, match="holds no audio files"):
        predict(cfg)
    (tmp_path / "junk.wav").write_bytes(b"junk")
    cfg = compose_cfg("predict", [*on(folder), f"ckpt_path={ckpt}", f"audio={tmp_path}/junk.wav"])
    with raises_user_error(DataError, match=r"junk\.wav: cannot read it as audio"):
        predict(cfg)
    # A dataset whose synth cannot be rebuilt from its JSON.
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    info = json.loads((copy / INFO_FILENAME).read_text())
    info["synth_config"]["module"]["_target_"] = "builtins.eval"
    (copy / INFO_FILENAME).write_text(json.dumps(info))
    cfg = compose_cfg("predict", [*on(copy), f"ckpt_path={ckpt}", f"audio={tmp_path}/junk.wav"])
    with raises_user_error(DataError, match="only the project's synths"):
        predict(cfg)
    # A dataset with other labels than the checkpoint's.
    other = make_vimh(tmp_path / "other")
    cfg = compose_cfg("predict", [*on(other), f"ckpt_path={ckpt}", f"audio={tmp_path}/junk.wav"])
    with raises_user_error(DataError, match="but dataset .* labels"):
        predict(cfg)


def test_predict_on_a_folder_predicts_every_good_file_and_names_every_bad_one(
    compose_cfg, trained, tmp_path
):
    folder, ckpt = trained
    truth = {"pitch": [45.0, 57.0, 69.0], "level": [0.0, -6.0, -12.0], "decay": [12.0, 30.0, 48.0]}
    sr = 16000
    notes = render_notes(truth, sr).numpy()
    wavs = tmp_path / "mixed"
    wavs.mkdir()
    for i, name in enumerate(("a_good.wav", "c_good.wav", "e_good.flac")):
        sf.write(wavs / name, notes[i], sr)
    (wavs / "b_junk.wav").write_bytes(b"RIFF not really audio")
    sf.write(wavs / "d_empty.wav", np.zeros(0, np.float32), sr)
    sf.write(wavs / "f_nan.wav", np.full(100, np.nan, np.float32), sr, subtype="FLOAT")
    cfg = compose_cfg("predict", [*on(folder), f"ckpt_path={ckpt}", f"audio={wavs}"])
    out = Path(cfg.paths.output_dir)
    said = (
        rf"3 of 6 files could not be used: {wavs}/b_junk.wav: cannot read it as audio .*; "
        rf"{wavs}/d_empty.wav: the file holds no audio samples; {wavs}/f_nan.wav: the audio "
        rf"holds non-finite samples .*; the others are in {out}/predictions.csv"
    )
    with raises_user_error(DataError, match=said):  # the entry point exits with status 1
        predict(cfg)
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in rows] == ["a_good.wav", "c_good.wav", "e_good.flac"]
    spec = VIMHDataset(folder).params[0]
    want = spec.class_index(np.array(truth["pitch"]))
    got = np.array([int(r["pitch_class"]) for r in rows])
    assert np.abs(got - want).max() <= 1, (got, want)
    with open(out / "skipped.csv") as f:
        skipped = list(csv.DictReader(f))
    assert [Path(r["file"]).name for r in skipped] == ["b_junk.wav", "d_empty.wav", "f_nan.wav"]
    assert skipped[1]["reason"] == "the file holds no audio samples"
    # Only bad files: nothing is written, the same line.
    bad_only = tmp_path / "bad_only"
    bad_only.mkdir()
    shutil.copy(wavs / "b_junk.wav", bad_only)
    cfg = compose_cfg("predict", [*on(folder), f"ckpt_path={ckpt}", f"audio={bad_only}"], "none")
    with raises_user_error(DataError, match=r"^1 of 1 files could not be used: .*b_junk.wav"):
        predict(cfg)
    assert not any(Path(cfg.paths.output_dir).glob("*.csv"))


def test_predict_hears_every_note_of_a_long_file_or_says_what_it_left_out(
    compose_cfg, trained, tmp_path, caplog
):
    """A file of several notes: `onset=each` predicts every one (onset segmentation); one note
    per file (the default) predicts the first and warns with the seconds of sound left out."""
    folder, ckpt = trained
    truth = {
        "pitch": [45.0, 69.0, 51.0, 63.0],
        "level": [0.0, -6.0, 0.0, -6.0],
        "decay": [48.0, 48.0, 48.0, 48.0],
    }
    sr = 16000
    notes = render_notes(truth, sr).numpy()
    onsets = [0.0, 1.5, 3.25, 4.75]  # half a second or more of silence between notes
    audio = np.zeros(int(6.0 * sr), np.float32)
    for note, at in zip(notes, onsets):
        audio[int(at * sr) : int(at * sr) + sr] += note
    sf.write(tmp_path / "phrase.wav", audio, sr)
    spec = VIMHDataset(folder).params[0]
    cfg = compose_cfg(
        "predict", [*on(folder), f"ckpt_path={ckpt}", f"audio={tmp_path}/phrase.wav", "onset=each"]
    )
    with caplog.at_level("WARNING"):
        _, objects = predict(cfg)
    assert [f["onset_s"] for f in objects["files"]] == pytest.approx(onsets, abs=0.006)
    got = objects["classes"]["pitch"]
    assert np.abs(got - spec.class_index(np.array(truth["pitch"]))).max() <= 1, got
    assert "sound the model does not hear" not in caplog.text
    caplog.clear()
    cfg = compose_cfg(
        "predict", [*on(folder), f"ckpt_path={ckpt}", f"audio={tmp_path}/phrase.wav"], "first"
    )
    with caplog.at_level("WARNING"):
        _, objects = predict(cfg)
    [fact] = objects["files"]
    assert fact["onset_s"] == 0 and 1.0 < fact["ignored_s"] < 4.5  # three notes' sound
    assert (
        f"1 file(s) hold sound the model does not hear (each note is 1 s from its onset): "
        f"{fact['ignored_s']:.2f} s ignored in all, e.g. phrase.wav: {fact['ignored_s']:.2f} s; "
        f"pass onset=each to predict every note"
    ) in caplog.text
