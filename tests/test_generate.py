"""generate_vimh.py's library: determinism, exact labels, identifiability, no overwriting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from src.data.vimh import INFO_FILENAME, VIMHDataset
from src.errors import ConfigError, DatasetExistsError
from src.generate import generate_dataset
from src.generation.identifiability import identifiability
from src.generation.recipe import dataset_name
from src.generation.renderer import batch_generator, build_renderer, split_sizes
from src.utils.config import compose_config

SMALL = [
    "dataset.size=96",
    "dataset.batch_size=40",
    "spectrogram.height=16",
    "spectrogram.width=16",
    "identifiability.base_points=3",
    "identifiability.probe_records=0",
]


def gen_cfg(out: Path, *overrides: str):
    return compose_config("generate", [*SMALL, f"dataset.out_dir={out}", *overrides])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = generate_dataset(gen_cfg(tmp_path / "a"))
    b = generate_dataset(gen_cfg(tmp_path / "b"))
    c = generate_dataset(gen_cfg(tmp_path / "c", "dataset.seed=1"))
    assert a.name == b.name == dataset_name(gen_cfg(tmp_path / "a"))
    assert re.fullmatch(r"vimh-16x16x1_8000Hz_1p0s_96dss_saw-[0-9a-f]{8}_3p", a.name)
    assert c.name != a.name  # another seed is another recipe, so another folder
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(["train", "val", "test", INFO_FILENAME])
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "train").read_bytes() != (c / "train").read_bytes()


def test_dataset_reads_back_and_labels_are_exact(tmp_path):
    cfg = gen_cfg(tmp_path, "dataset.store_audio=true")
    root = generate_dataset(cfg)
    ds = VIMHDataset(root)
    info = ds.info.raw
    assert [p.name for p in ds.params] == ["pitch", "level", "decay"]
    assert {k: len(ds[k]) for k in ds.splits} == {"train": 76, "val": 10, "test": 10}
    assert info["fixed_parameters"]["attack"]["value"] == 0.005
    assert info["seed"] == 42 and info["synth_config"]["module"]["_target_"]
    assert [row["parameter"] for row in info["identifiability"]] == ["pitch", "level", "decay"]
    # The default labels are continuous: codes all over the range, not on a class grid.
    assert set(info["parameter_sampling"].values()) == {"continuous", "fixed"}
    for j in range(len(ds.params)):
        assert len(np.unique(ds["train"].codes[:, j])) > 40
    # Re-rendering a split from the stored labels and config gives the stored images and audio:
    # the labels are exactly what made the sound.
    renderer = build_renderer(cfg)
    codes = ds["val"].codes
    pixels, audio = renderer.render(codes, batch_generator(cfg.dataset.seed, "val", 0))
    np.testing.assert_array_equal(pixels, ds["val"].images)
    np.testing.assert_array_equal(audio.numpy(), ds.audio("val"))


def test_refuses_to_overwrite(tmp_path):
    root = generate_dataset(gen_cfg(tmp_path, "dataset.name=mine"))
    before = (root / "train").read_bytes()
    with pytest.raises(DatasetExistsError, match="overwrite=true"):
        generate_dataset(gen_cfg(tmp_path, "dataset.name=mine", "dataset.seed=3"))
    assert (root / "train").read_bytes() == before
    generate_dataset(
        gen_cfg(tmp_path, "dataset.name=mine", "dataset.seed=3", "dataset.overwrite=true")
    )
    assert (root / "train").read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]  # no temporary folders left


def test_identifiability_flags_fully_and_partly_unlearnable_labels(tmp_path, caplog):
    # FM with the modulation index fixed at 0 is a plain sine: the ratio changes nothing.
    silent = gen_cfg(
        tmp_path,
        "synth=fm",
        "synth.params.index.min=0",
        "synth.params.index.max=0",
        "synth.params.index.default=0",
        "synth.params.pitch.step=6",
    )
    rows = {r["parameter"]: r for r in identifiability(build_renderer(silent), 0, base_points=4)}
    assert rows["pitch"]["verdict"] == "learnable" and rows["pitch"]["worst_d"] > 3
    assert rows["ratio"]["verdict"] == "not learnable" and rows["ratio"]["hidden_steps"] == 1.0
    assert rows["ratio"]["worst_d"] == 0.0  # same draws, no effect: identical images
    root = generate_dataset(silent)
    info = json.loads((root / INFO_FILENAME).read_text())
    assert [r["learnable"] for r in info["identifiability"]] == [True, False]
    assert "LABEL NOT LEARNABLE: 'ratio'" in caplog.text
    # With index 0 one class in eight, ratio is hidden exactly where the index is 0: an
    # average over base points would call it learnable; the fractions say what it is.
    partly = gen_cfg(
        tmp_path,
        "synth=fm",
        "synth.params.index.min=0",
        "synth.params.index.max=7",
        "synth.params.pitch.step=6",
        "identifiability.base_points=16",
    )
    rows = {r["parameter"]: r for r in identifiability(build_renderer(partly), 0, base_points=16)}
    ratio = rows["ratio"]
    assert ratio["verdict"].startswith("partly unlearnable") and ratio["median_d"] > 3
    assert 0.0 < ratio["hidden_base_points"] < 0.5
    assert ratio["hidden_steps"] == pytest.approx(ratio["hidden_base_points"], abs=0.02)


def test_identifiability_probe_reports_nn_and_linear_accuracy(tmp_path):
    cfg = gen_cfg(tmp_path, "identifiability.probe_records=400")
    rows = identifiability(build_renderer(cfg), 0, base_points=2, probe_records=400)
    for r in rows:
        assert r["probe_chance"] == pytest.approx(1 / r["classes"], abs=1e-4)
        assert 0.0 <= r["probe_nn"] <= 1.0 and 0.0 <= r["probe_linear"] <= 1.0
    pitch = next(r for r in rows if r["parameter"] == "pitch")
    assert pitch["probe_linear"] > 3 * pitch["probe_chance"]  # pitch is easy from pixels


def test_log_scale_continuous_labels_spread_in_log_space(tmp_path):
    """Every code equally likely, codes spaced in octaves: a 20 Hz-20 kHz parameter puts about
    1/256 of its records at the lowest code (linear codes put 23% there) and half of them
    below the geometric mean, and every octave class is populated."""
    from src.generation.params import parse_params, sample_codes

    (p,) = parse_params(
        {"f": {"min": 20, "max": 20480, "step": 1, "scale": "log", "sampling": "continuous"}}
    )
    codes = sample_codes([p], 200_000, np.random.default_rng(0))[:, 0]
    assert (codes == 0).mean() == pytest.approx(1 / 256, abs=0.002)
    counts = np.bincount(codes, minlength=256) / len(codes)
    assert counts.max() < 2 / 256 and counts.min() > 0.5 / 256
    values = p.spec.decode(codes)
    assert (values < np.sqrt(20 * 20480)).mean() == pytest.approx(0.5, abs=0.01)
    assert p.spec.num_classes == 11  # 20, 40, ..., 20480 Hz: 10 steps of an octave
    classes = p.spec.class_index(values)
    assert np.bincount(classes).min() > 0.04 * len(values)  # every octave class populated


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match=r"synth\.params\.pitch: .*step 5\.0 does not divide"):
        build_renderer(gen_cfg(tmp_path, "synth.params.pitch.step=5"))
    with pytest.raises(ConfigError, match="sampling: expected one of"):
        build_renderer(gen_cfg(tmp_path, "synth.params.pitch.sampling=uniform"))
    with pytest.raises(ConfigError, match="fractions must add up to 1"):
        split_sizes(100, {"train": 0.8, "test": 0.1})
    with pytest.raises(ConfigError, match="does not use"):
        build_renderer(gen_cfg(tmp_path, "+synth.params.cutoff={min: 1, max: 2, step: 1}"))


def test_continuous_sampling_and_other_synths(tmp_path):
    root = generate_dataset(
        gen_cfg(
            tmp_path,
            "synth=moog",
            "dataset.size=40",
            "synth.params.pitch.sampling=continuous",
            "identifiability.enabled=false",
        )
    )
    ds = VIMHDataset(root)
    assert [p.name for p in ds.params] == ["pitch", "cutoff", "resonance", "env_amount"]
    assert len(np.unique(ds["train"].codes[:, 0])) > 20  # off-grid codes
    # Grid sampling: every decoded value is (within code resolution) a grid value.
    for j, p in enumerate(ds.params[1:], start=1):
        v = ds["train"].values()[:, j]
        assert np.abs(v - p.class_value(p.class_index(v))).max() <= p.span / 255 + 1e-9
