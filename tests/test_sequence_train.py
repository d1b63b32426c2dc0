"""The sequence task through src/train.py and src/eval.py on tiny generated phrases (CPU)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from src.audio.io import load_clips
from src.errors import ConfigError, DataError
from src.eval import evaluate
from src.metrics import metric_key
from src.paths import CONFIG_DIR
from src.train import train
from tests.helpers.runs import QUIET, raises_user_error
from tests.helpers.sequence import on_phrases, write_wavs

SEQ_EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("seq_*.yaml"))
SEQ_MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("seq_*.yaml"))


@pytest.mark.parametrize(
    "overrides",
    [[f"experiment={e}"] for e in SEQ_EXPERIMENTS]
    + [["experiment=seq_lstm", f"model={m}"] for m in SEQ_MODELS]
    + [["experiment=seq_gru", "model.ahead=3", "model.scheduled_sampling.max_prob=0.5"]],
    ids=lambda o: " ".join(v.split("=")[1] for v in o),
)
def test_fast_dev_run(compose_cfg, one_thread, phrases, overrides):
    cfg = compose_cfg("train", [*overrides, *on_phrases(phrases), "debug=fdr"])
    metrics, objects = train(cfg)
    assert objects["model"].task == "sequence"
    for key in ("test/score", "test/mse", "test/repeat_last/mse", "test/rollout_mse"):
        assert key in metrics, key
    # k-frame-ahead models are also judged on their direct k-step outputs.
    assert ("test/direct_mse" in metrics) == (objects["model"].hparams.ahead > 1)


def test_fast_dev_run_trains_on_a_wav_folder(compose_cfg, one_thread, tmp_path):
    """data=wav_dir with splits trains too; the mean-frame baseline comes from its train files."""
    write_wavs(tmp_path / "wavs", n_files=5, seconds=2.0)
    overrides = [
        "experiment=seq_lstm",
        "model=seq_lstm_40k",
        "data=wav_dir",
        f"data.path={tmp_path / 'wavs'}",
        "data.splits={train: 0.6, val: 0.2, test: 0.2}",
        "data.clip_seconds=1.0",
        "data.spectrogram.height=16",
        "data.spectrogram.width=32",
        "data.context=8",
        "data.horizon=4",
        "data.batch_size=8",
        "debug=fdr",
    ]
    metrics, objects = train(compose_cfg("train", overrides))
    dm, model = objects["datamodule"], objects["model"]
    for key in ("test/score", "test/mean_frame/mse", "test/repeat_last/rollout_mse"):
        assert math.isfinite(float(metrics[key])), key
    # The baseline the model scores is the mean frame of the train files, imaged anew here,
    # not that of every file (which differs: the files hold different tones), and averaged in
    # linear power, not in log-mel (which differs too).
    train_files = sorted({c["file"] for c in dm.clip_sources["train"]})
    all_files = sorted(str(p) for p in (tmp_path / "wavs").rglob("*.wav"))
    assert 0 < len(train_files) < len(all_files) == 5

    def mean_frame(files: list[str], in_power: bool = True) -> torch.Tensor:
        clips, _ = load_clips([Path(f) for f in files], 8000, dm.clip_samples, dm.clip_hop)
        unit = dm.imager(clips)[:, dm.channel].double() / 255.0  # (N, H, W), dB over [-80, 0]
        if not in_power:
            return unit.mean(dim=(0, 2))
        power = 10.0 ** ((-80.0 + 80.0 * unit) / 10.0)
        return (10.0 * power.mean(dim=(0, 2)).log10() + 80.0) / 80.0

    expected = mean_frame(train_files)
    assert torch.allclose(model.frame_mean.double(), expected, atol=1e-6)
    assert (mean_frame(all_files) - expected).abs().max() > 0.01
    assert (mean_frame(train_files, in_power=False) - expected).abs().max() > 0.01


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phrases):
    """A 2-epoch seq_lstm_40k run on the tiny phrases, with the report (read-only)."""
    import torch
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import compose_config

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("seq_run")
    overrides = [
        "experiment=seq_lstm",
        "model=seq_lstm_40k",
        *on_phrases(phrases),
        "trainer.max_epochs=2",
        "callbacks.sequence_report.n_listen=2",
        "callbacks.sequence_report.n_iter=4",
        "callbacks.lr_monitor=null",
        *QUIET,
    ]
    try:
        metrics, objects = train(compose_config("train", out, overrides))
    finally:
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
    return metrics, objects, out


def test_training_logs_the_model_beside_its_baselines_and_writes_the_report(trained):
    metrics, _, out = trained
    m = {k: float(v) for k, v in metrics.items()}
    score = 1 - m["test/mse"] / m[metric_key("test", "mse", "repeat_last")]
    assert m["test/score"] == pytest.approx(score, rel=1e-5)
    for p in (None, "repeat_last", "mean_frame"):
        for name in ("mse", "mse_db", "centroid_err", "entropy_err", "rollout_mse"):
            assert metric_key("test", name, p) in m, (p, name)
    report = out / "sequence"
    rows = read_csv(report / "sequence_metrics.csv")
    assert {(r["predictor"], r["mode"]) for r in rows} == {
        (p, mode) for p in ("model", "repeat_last", "mean_frame") for mode in ("step", "rollout")
    }
    horizon = read_csv(report / "horizon.csv")
    assert len(horizon) == 3 * 4  # 3 predictors x horizon 4
    for p, key in (("model", "test/rollout_mse"), ("repeat_last", "test/repeat_last/rollout_mse")):
        curve = [float(r["mse"]) for r in horizon if r["predictor"] == p]
        assert sum(curve) / len(curve) == pytest.approx(m[key], rel=1e-4)  # equal counts per step
    names = {p.name for p in report.iterdir()}
    assert {"horizon.png", "example_000.png", "example_001.png"} <= names
    for i in range(2):
        for kind in ("target", "one_step", "rollout"):
            assert f"example_{i:03d}_{kind}.wav" in names


def test_fitted_baselines_score_like_the_module(trained):
    """src/evaluation/sequence_baselines.py scores repeat-last and the mean frame on the same
    windows with the same numbers the module logged; its linear AR beats the mean frame."""
    from src.evaluation.sequence_baselines import sequence_baselines

    metrics, objects, _ = trained
    out = sequence_baselines(objects["datamodule"])["metrics"]
    for p in ("repeat_last", "mean_frame"):
        for name in ("mse", "mse_db", "centroid_err", "rollout_mse", "rollout_entropy_err"):
            key = metric_key("test", name, p)
            assert out[key] == pytest.approx(float(metrics[key]), rel=1e-4), key
    ar, mean = (out[metric_key("test", "mse", p)] for p in ("linear_ar", "mean_frame"))
    assert ar < mean


def test_eval_reproduces_the_test_metrics_and_writes_the_report(compose_cfg, one_thread, trained):
    metrics, objects, _ = trained
    best = objects["trainer"].checkpoint_callback.best_model_path
    cfg = compose_cfg(
        "eval",
        [
            "data=phrase",
            *on_phrases(objects["datamodule"].data_dir),
            f"ckpt_path={best}",
            "callbacks=eval_sequence",
            "callbacks.rich_progress_bar=null",
            "callbacks.sequence_report.n_iter=2",
            "logger=none",
        ],
        out="eval",
    )
    emetrics, _ = evaluate(cfg)
    for key in ("test/score", "test/mse", "test/rollout_mse_db", "test/mean_frame/mse"):
        assert float(emetrics[key]) == pytest.approx(float(metrics[key]), rel=1e-5), key
    assert (Path(cfg.paths.output_dir) / "sequence" / "horizon.png").is_file()


def test_eval_on_a_wav_folder_and_refusals(compose_cfg, one_thread, trained, tmp_path):
    _, objects, _ = trained
    best = objects["trainer"].checkpoint_callback.best_model_path
    write_wavs(tmp_path / "wavs", n_files=2, seconds=2.0)
    wav = [
        "data=wav_dir",
        f"data.path={tmp_path / 'wavs'}",
        "data.clip_seconds=1.0",
        "data.spectrogram.height=16",
        "data.spectrogram.width=32",
        "data.context=6",  # other windows than training: allowed
        "data.horizon=5",
        f"ckpt_path={best}",
        "callbacks=eval_sequence",
        "callbacks.rich_progress_bar=null",
        "callbacks.sequence_report.n_listen=1",
        "callbacks.sequence_report.n_iter=2",
        "logger=none",
    ]
    metrics, objects = evaluate(compose_cfg("eval", wav, out="wav"))
    assert objects["datamodule"].splits["test"].n_records == 4
    assert "test/repeat_last/rollout_mse" in metrics
    horizon = read_csv(Path(objects["cfg"].paths.output_dir) / "sequence" / "horizon.csv")
    assert max(int(r["step"]) for r in horizon) == 5
    # Frames made another way (here 24 mel bins) are refused before anything is built.
    with raises_user_error(DataError, "height: 16 vs 24"):
        evaluate(compose_cfg("eval", [*wav, "data.spectrogram.height=24"], out="wav24"))
    # The parameter-estimation report cannot describe a sequence model: said plainly.
    with raises_user_error(ConfigError, "callbacks=eval_sequence"):
        evaluate(compose_cfg("eval", [*wav[:-5], "logger=none"], out="wrong"))


def test_predict_refuses_a_sequence_checkpoint(compose_cfg, one_thread, trained, toy, tmp_path):
    from src.predict import predict
    from tests.helpers.runs import on

    _, objects, _ = trained
    best = objects["trainer"].checkpoint_callback.best_model_path
    wav = write_wavs(tmp_path, n_files=1, seconds=1.0)[0]
    cfg = compose_cfg("predict", [*on(toy), f"ckpt_path={best}", f"audio={wav}"], out="predict")
    with raises_user_error(ConfigError, "no parameters to estimate"):
        predict(cfg)


@pytest.mark.slow
def test_the_lstm_experiment_beats_repeat_last_frame(compose_cfg, one_thread):
    """The acceptance run: experiment=seq_lstm as shipped, its dataset generated from the
    recipe (a few minutes on 2 cores)."""
    cfg = compose_cfg(
        "train", ["experiment=seq_lstm", "callbacks.sequence_report.n_listen=1", *QUIET]
    )
    metrics, _ = train(cfg)
    m = {k: float(v) for k, v in metrics.items()}
    assert m["test/score"] > 0.05
    assert m["test/mse"] < m["test/repeat_last/mse"] and m["test/mse"] < m["test/mean_frame/mse"]
    assert m["test/mse_db"] < m["test/repeat_last/mse_db"]
    report = Path(cfg.paths.output_dir) / "sequence"
    for name in (
        "sequence_metrics.csv",
        "horizon.png",
        "example_000.png",
        "example_000_rollout.wav",
    ):
        assert (report / name).is_file(), name
