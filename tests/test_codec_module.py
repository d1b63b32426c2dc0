"""The codec task through the shared spine: configs named by their size, the waveform
datamodule (sources, held-out kinds, recordings), training, the checkpoint and eval's report."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from src.audio.io import write_wav
from src.data.waveforms import WaveformDataModule
from src.errors import DataError
from src.eval import evaluate
from src.models.codec_module import CodecModule
from src.models.tasks import read_checkpoint, task_of
from src.train import train
from tests.helpers.models import MODEL_DIR, stated_size
from tests.helpers.runs import QUIET, WeightWatch, raises_user_error
from tests.helpers.vimh import SAMPLE_RATE, make_vimh

CODEC_CONFIGS = sorted(MODEL_DIR.glob("codec_*.yaml"))
CLIP = 2000  # samples per clip of the tiny data (0.25 s at 8 kHz)


@pytest.mark.parametrize("path", CODEC_CONFIGS, ids=lambda p: p.stem)
def test_codec_configs_are_named_by_their_measured_size(path):
    cfg = OmegaConf.load(path)
    model = hydra.utils.instantiate(cfg, input_shape=[1, 16000], sample_rate=16000)
    assert isinstance(model, CodecModule)
    counts = model.param_counts
    assert counts["parameters"] == sum(p.numel() for p in model.parameters())
    assert counts["total"] == counts["parameters"] + counts["codebooks"]
    stated = stated_size(path)
    assert abs(counts["total"] - stated) <= 0.1 * stated, f"{path.name}: {counts['total']:,}"
    text = path.read_text()
    for key in ("parameters", "codebooks", "total"):
        assert f"{counts[key]:,}" in text, f"{path.name}: comment should say {counts[key]:,}"


def test_a_near_5k_codec_and_larger_ones():
    sizes = sorted(stated_size(p) for p in CODEC_CONFIGS)
    assert sizes[0] == 5000 and len(sizes) >= 3 and sizes[-1] >= 4 * sizes[0]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    """A VIMH dataset with stored waveforms and a folder of 'recordings' (4 files)."""
    root = tmp_path_factory.mktemp("codec_data")
    toy = make_vimh(root / "toy", n_train=48, n_val=8, n_test=8, audio_samples=CLIP)
    wavs = root / "wavs"
    t = torch.arange(3 * CLIP) / SAMPLE_RATE
    for i, f in enumerate((110.0, 220.0, 330.0, 440.0)):
        write_wav(wavs / f"take{i}.wav", 0.3 * torch.sin(2 * math.pi * f * t), SAMPLE_RATE)
    return {"toy": {"data_dir": str(toy)}, "rec": {"wav_dir": str(wavs)}}


def datamodule(sources: dict, **kwargs) -> WaveformDataModule:
    return WaveformDataModule(
        sources, sample_rate=SAMPLE_RATE, clip_s=CLIP / SAMPLE_RATE, batch_size=8, **kwargs
    )


def test_sources_splits_and_heldout(sources):
    dm = datamodule(sources, heldout=["rec"], train_crop=512)
    dm.setup()
    assert dm.spec.input_kind == "audio" and dm.spec.input_shape == (1, CLIP)
    x, src = dm.tensors("train")
    assert x.shape == (48, 1, CLIP) and x.dtype == torch.float32 and set(src.tolist()) == {0}
    assert set(dm.tensors("val")[1].tolist()) == {0}  # held out: never trained or validated on
    _test_x, test_src = dm.tensors("test")
    assert set(test_src.tolist()) == {0, 1} and int((test_src == 1).sum()) == 3  # 1 file of 4
    dm.trainer = type("T", (), {"training": True})()
    cropped, _ = dm.on_after_batch_transfer((x[:4], src[:4]))
    assert cropped.shape == (4, 1, 512)
    # Each crop is a window of its own record.
    for i in range(4):
        windows = x[i, 0].unfold(0, 512, 1)
        assert (windows == cropped[i, 0]).all(dim=1).any()


def test_recordings_are_split_by_file(sources):
    dm = datamodule({"rec": sources["rec"]})
    dm.setup()
    counts = {s: len(dm.tensors(s)[0]) for s in ("train", "val", "test")}
    assert counts == {"train": 6, "val": 3, "test": 3}  # 3 clips per file: 2 / 1 / 1 files


def test_a_source_at_another_rate_is_refused(sources):
    with pytest.raises(DataError, match="sample rate 8000 Hz"):
        WaveformDataModule(sources, sample_rate=16000, clip_s=0.125).open_splits()


def overrides(sources: dict, heldout: str = "[rec]") -> list[str]:
    out = ["data=codec", "model=codec_5k", "callbacks=codec", *QUIET]
    out += [
        "~data.sources",
        "+data.sources={"
        + ",".join(
            f"{name}:{{{kind}:'{path}'}}"
            for name, src in sources.items()
            for kind, path in src.items()
        )
        + "}",
        f"data.heldout={heldout}",
        f"data.sample_rate={SAMPLE_RATE}",
        f"data.clip_s={CLIP / SAMPLE_RATE}",
        "data.train_crop=1024",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "callbacks.codec_report.max_records=6",
        "callbacks.codec_report.mp3=false",
        "callbacks.codec_report.stoi=false",
    ]
    return out


@pytest.fixture(scope="module")
def trained(sources, tmp_path_factory):
    from tests.conftest import compose_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("codec_run")
    try:
        metrics, objects = train(compose_config("train", out, overrides(sources)))
    finally:
        torch.set_num_threads(threads)
    return out, {k: float(v) for k, v in metrics.items()}, objects


def test_training_logs_the_codec_metrics_and_writes_the_report(trained):
    out, metrics, _objects = trained
    assert metrics["test/kbps"] == pytest.approx(SAMPLE_RATE / 32 * 12 / 1000)  # 3 kbps at 8 kHz
    assert 0 < metrics["test/entropy_kbps"] <= metrics["test/kbps"] + 1e-6
    assert 0 < metrics["test/usage"] <= 1 and metrics["test/perplexity"] >= 1
    for name in ("snr_db", "si_sdr_db", "psnr_db", "mse", "mrstft"):
        assert math.isfinite(metrics[f"test/{name}"]), name
        assert math.isfinite(metrics[f"test/rec/{name}"]), name  # the held-out kind, alone
    assert metrics["test/score"] == metrics["test/snr_db"] == metrics["test/toy/snr_db"]
    report = out / "codec"
    rows = (report / "codec_metrics.csv").read_text().splitlines()
    names = [r.split(",")[0] for r in rows[1:]]
    assert names[0] == "model" and "silence" in names and "mulaw_8bit" in names
    assert (report / "rate_distortion.png").stat().st_size > 0
    wavs = {p.name for p in (report / "listen").rglob("*.wav")}
    assert {"original.wav", "model.wav", "mulaw_4bit.wav", "down_2000Hz.wav"} <= wavs


def test_coded_bitrate_uses_tables_fitted_on_the_training_clips(trained):
    """test/coded_kbps, recomputed here: the tested weights' codes of the training clips give
    each stage's table (add-one smoothed), applied to the in-distribution test clips' codes."""
    _out, metrics, objects = trained
    model, dm = objects["model"], objects["datamodule"]
    model.eval()
    sizes = model.net.quantizer.codebook_sizes

    def histogram(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            codes = model(x)[1].codes  # (B, S, F)
        return torch.stack(
            [torch.bincount(codes[:, s].flatten(), minlength=max(sizes)) for s in range(len(sizes))]
        ).double()

    train_x, _ = dm.tensors("train")
    test_x, src = dm.tensors("test")
    inside = torch.tensor([dm.source_names[int(g)] not in dm.heldout for g in src])
    table, counts = histogram(train_x), histogram(test_x[inside])
    bits = 0.0
    for s, k in enumerate(sizes):
        q = (table[s, :k] + 1) / (table[s, :k] + 1).sum()
        p = counts[s, :k] / counts[s, :k].sum()
        bits += float(-(p * q.log2()).sum())
    expected = bits * model.net.frame_rate / 1000
    assert metrics["test/coded_kbps"] == pytest.approx(expected, rel=1e-4)
    # Tables fitted elsewhere cost more than the test codes' own entropy (Gibbs).
    assert metrics["test/coded_kbps"] > metrics["test/entropy_kbps"]


def test_eval_rebuilds_the_codec_from_its_checkpoint(trained, sources, compose_cfg):
    _out, metrics, objects = trained
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    assert task_of(read_checkpoint(ckpt)) is CodecModule
    over = [o for o in overrides(sources) if o.startswith(("data", "~data", "+data"))]
    report = [
        "callbacks=codec_eval",
        "callbacks.codec_report.mp3=false",
        "callbacks.rich_progress_bar=null",
    ]
    cfg = compose_cfg("eval", [f"ckpt_path={ckpt}", *report, *over], out="eval")
    result, _ = evaluate(cfg)
    assert float(result["test/snr_db"]) == pytest.approx(metrics["test/snr_db"], abs=1e-4)
    assert (Path(cfg.paths.output_dir) / "codec" / "codec_metrics.csv").is_file()
    # Data at another rate is refused before anything is built.
    other = [o.replace(f"data.sample_rate={SAMPLE_RATE}", "data.sample_rate=16000") for o in over]
    toy_only = [*other[: -0 or None]]
    cfg = compose_cfg("eval", [f"ckpt_path={ckpt}", "callbacks=codec_eval", *toy_only], out="e2")
    with raises_user_error(DataError, "sample rate"):
        evaluate(cfg)


def test_the_codec_experiment_runs_end_to_end(sources, compose_cfg, one_thread):
    over = [o for o in overrides(sources) if o.startswith(("data", "~data", "+data"))]
    cfg = compose_cfg("train", ["experiment=codec_tiny", *over, "debug=fdr"])
    watch = WeightWatch()
    metrics, objects = train(cfg, callbacks=[watch])
    model = objects["model"]
    assert isinstance(model, CodecModule)
    # The experiment's codec (codec_5k: 4,089 parameters and 1,024 codebook entries, 12 bits
    # a frame of 32 samples) took one optimizer step and was tested as the experiment says.
    assert (model.param_counts["parameters"], model.param_counts["codebooks"]) == (4089, 1024)
    assert watch.changed(), "no weight changed: the optimizer never stepped"
    assert float(metrics["test/kbps"]) == pytest.approx(SAMPLE_RATE / 32 * 12 / 1000)
    assert float(metrics["test/score"]) == float(metrics["test/snr_db"])  # the codec's score
    for key in ("test/snr_db", "test/rec/snr_db", "val/snr_db", "test/mrstft"):
        assert math.isfinite(float(metrics[key])), key
    assert 0 < float(metrics["test/usage"]) <= 1
