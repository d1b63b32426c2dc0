"""The VIMH reader and writer, byte by byte, and every bad input the reader must name."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from src.data.vimh import (
    INFO_FILENAME,
    ParamSpec,
    VIMHDataset,
    VIMHWriter,
    build_info,
    dataset_folder_name,
    parse_folder_name,
)
from tests.helpers.handmade import PARAMS, nsmt_info, write_handmade


@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_reads_handmade_records_byte_exact(tmp_path, version):
    root = write_handmade(tmp_path / "handmade", version)
    ds = VIMHDataset(root)
    train = ds["train"]
    assert train.version == version
    assert train.records.dtype.itemsize == (15 if version == "2.1" else 7) + 4 + 6
    assert train.images.shape == (2, 1, 2, 3)
    np.testing.assert_array_equal(train.images[0, 0], np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(train.images[1, 0], np.arange(10, 16).reshape(2, 3))
    np.testing.assert_array_equal(train.codes, [[0, 255], [127, 36]])
    # Decoding: v = min + q/255 * (max - min); class = round((v - min) / step).
    np.testing.assert_allclose(train.values()[1], [48 + 127 / 255 * 24, -21 + 36 / 255 * 21])
    np.testing.assert_array_equal(train.classes(), [[0, 7], [4, 1]])
    # Ids in another order are put back in parameter order.
    np.testing.assert_array_equal(ds["test"].codes, [[255, 72]])
    if version == "2.1":
        lo, hi = train.spec_range
        np.testing.assert_array_equal(lo, [-80, -80])
        np.testing.assert_array_equal(hi, [0, 0])
    else:
        assert train.spec_range is None


def test_1043_bytes_for_32x32x1_with_two_parameters(tmp_path):
    name = dataset_folder_name(32, 32, 1, 8000, 1.0, 3, "saw", 2)
    assert name == "vimh-32x32x1_8000Hz_1p0s_3dss_saw_2p"
    root = tmp_path / name
    with VIMHWriter(
        root, height=32, width=32, channels=1, params=PARAMS, split_sizes={"train": 2, "test": 1}
    ) as w:
        for split, n in (("train", 2), ("test", 1)):
            w.write(split, np.zeros((n, 1, 32, 32), np.uint8), np.zeros((n, 2), np.uint8), -80, 0)
        w.finish(make_info(root.name, 32, 32, 1, {"train": 2, "test": 1}))
    assert (root / "train").stat().st_size == 2 * 1043
    assert (root / "test").stat().st_size == 1043


INFO_ARGS = {
    "dataset_name": "d",
    "height": 2,
    "width": 3,
    "channels": 1,
    "channel_labels": ["power"],
    "params": PARAMS,
    "fixed_parameters": {"attack": {"value": 0.005, "description": "s"}},
    "split_sizes": {"train": 1, "test": 1},
    "sample_rate": 8000,
    "duration": 1.0,
    "synth_type": "saw",
    "spectrogram_config": {"kind": "test"},
    "extra": {"seed": 7},
}


def make_info(name, h, w, c, sizes, params=PARAMS):
    return build_info(
        **{
            **INFO_ARGS,
            "dataset_name": name,
            "height": h,
            "width": w,
            "channels": c,
            "channel_labels": ["power"] * c,
            "params": params,
            "split_sizes": sizes,
        }
    )


def write_dataset(root, h=4, w=5, c=2, sizes=None, seed=0, audio=None):
    sizes = sizes or {"train": 7, "val": 3, "test": 2}
    rng = np.random.default_rng(seed)
    data = {}
    with VIMHWriter(
        root, height=h, width=w, channels=c, params=PARAMS, split_sizes=sizes, audio_samples=audio
    ) as wr:
        for split, n in sizes.items():
            px = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
            codes = rng.integers(0, 256, (n, 2), dtype=np.uint8)
            au = rng.standard_normal((n, audio), dtype=np.float32) if audio else None
            # Two batches per split, so appending is exercised.
            k = n // 2
            wr.write(split, px[:k], codes[:k], -80, 0, None if au is None else au[:k])
            wr.write(split, px[k:], codes[k:], -80, 0, None if au is None else au[k:])
            data[split] = (px, codes, au)
        wr.finish(make_info(root.name, h, w, c, sizes))
    return data


def test_write_read_round_trip(tmp_path):
    root = tmp_path / dataset_folder_name(4, 5, 2, 8000, 1.0, 12, "saw", 2)
    data = write_dataset(root, audio=16)
    ds = VIMHDataset(root)
    assert set(ds.splits) == {"train", "val", "test"}
    for split, (px, codes, au) in data.items():
        np.testing.assert_array_equal(ds[split].images, px)
        np.testing.assert_array_equal(ds[split].codes, codes)
        np.testing.assert_array_equal(ds.audio(split), au)
    info = json.loads((root / INFO_FILENAME).read_text())
    for key in (
        "format",
        "version",
        "dataset_name",
        "height",
        "width",
        "channels",
        "channel_labels",
        "varying_parameters",
        "parameter_names",
        "parameter_mappings",
        "fixed_parameters",
        "train_samples",
        "test_samples",
        "sample_rate",
        "duration",
        "synth_type",
        "spectrogram_config",
        "label_encoding",
    ):
        assert key in info, key
    assert info["version"] == "2.1" and info["label_encoding"]["metadata_bytes"] == 14
    assert info["parameter_mappings"]["pitch"]["scale"] == "linear"
    assert info["parameter_mappings"]["attack"] == {
        "min": 0.005,
        "max": 0.005,
        "step": 0.0,
        "description": "s",
    }
    assert ds.params == tuple(PARAMS)


NSMT_CODE = "q = floor(255 * (v - min) / (max - min)); v = min + q / 255 * (max - min)"
DECAY = ParamSpec("decay", 4.0, 128.0, 0.25, scale="log", unit="dB/s")


def test_label_encoding_states_each_parameters_true_formula(tmp_path):
    """Linear parameters only: NSMT's own words. A log-scale one is named with its formula,
    which (computed here from the words) is how its codes are made and read."""
    linear = make_info("lin", 2, 3, 1, {"train": 1, "test": 1})["label_encoding"]
    assert linear["code"] == NSMT_CODE
    assert linear["code_by_parameter"] == {"pitch": NSMT_CODE, "level": NSMT_CODE}

    mixed = [*PARAMS, DECAY]
    enc = make_info("log", 2, 3, 1, {"train": 1, "test": 1}, params=mixed)["label_encoding"]
    log_code = (
        "q = floor(255 * log2(v / min) / log2(max / min)); "
        "v = min * 2 ** (q / 255 * log2(max / min))"
    )
    assert enc["code_by_parameter"] == {"pitch": NSMT_CODE, "level": NSMT_CODE, "decay": log_code}
    assert NSMT_CODE not in enc["code"].split(". ")  # no longer claimed for every parameter
    assert f"linear parameters: {NSMT_CODE}" in enc["code"]
    assert f"log-scale parameters (decay): {log_code}" in enc["code"]
    # The stated log formula is the one the codes follow, both ways.
    v = np.geomspace(4.0, 128.0, 41)
    q = np.floor(255 * np.log2(v / 4.0) / np.log2(128.0 / 4.0) + 1e-9)
    np.testing.assert_array_equal(DECAY.encode(v), q)
    np.testing.assert_allclose(DECAY.decode(q), 4.0 * 2 ** (q / 255 * np.log2(32.0)))
    # The converter writes nearest codes and says so.
    enc = build_info(**{**INFO_ARGS, "params": mixed, "rounding": "round"})["label_encoding"]
    assert enc["code_by_parameter"]["decay"] == log_code.replace("floor", "round")
    assert enc["code_by_parameter"]["pitch"] == NSMT_CODE.replace("floor", "round")
    with pytest.raises(ValueError, match="rounding"):
        DECAY.code_formula("ceil")


def test_a_log_parameter_dataset_reads_back_and_its_json_stays_nsmt_shaped(tmp_path):
    root = tmp_path / "logdata"
    params = [PARAMS[0], DECAY]
    with VIMHWriter(
        root, height=2, width=3, channels=1, params=params, split_sizes={"train": 2, "test": 1}
    ) as w:
        for split, n in (("train", 2), ("test", 1)):
            codes = np.full((n, 2), 102, np.uint8)
            w.write(split, np.zeros((n, 1, 2, 3), np.uint8), codes, -80, 0)
        w.finish(make_info(root.name, 2, 3, 1, {"train": 2, "test": 1}, params=params))
    ds = VIMHDataset(root)
    np.testing.assert_allclose(ds["train"].values()[:, 1], 16.0)  # code 102 is 16 dB/s
    info = json.loads((root / INFO_FILENAME).read_text())
    enc = info["label_encoding"]
    assert isinstance(enc["code"], str) and enc["metadata_bytes"] == 14
    assert set(enc["code_by_parameter"]) == {"pitch", "decay"}


def test_vimh_doc_says_what_an_nsmt_reader_sees_for_the_saw_decay():
    """docs/vimh.md's worked example, recomputed from configs/synth/saw.yaml."""
    from omegaconf import OmegaConf

    from src.paths import CONFIG_DIR, PROJECT_ROOT

    m = OmegaConf.load(CONFIG_DIR / "synth" / "saw.yaml").params.decay
    decay = ParamSpec("decay", m.min, m.max, m.step, scale=m.scale)
    q = int(decay.encode(m.default))
    nsmt_value = m.min + q / 255 * (m.max - m.min)
    nsmt_classes = round((m.max - m.min) / m.step) + 1
    doc = " ".join((PROJECT_ROOT / "docs" / "vimh.md").read_text().split())
    example = (
        f"the default decay of {m.default:g} dB/s has code {q}, which NSMT reads as "
        f"{nsmt_value:.1f} dB/s, and NSMT counts {nsmt_classes} decay classes where there "
        f"are {decay.num_classes}"
    )
    assert example in doc
    assert f"({m.min:g} to {m.max:g} dB/s, step {m.step:g} octave" in doc


def test_writer_refuses_to_overwrite_and_cleans_up_on_error(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root)
    before = (root / "train").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        VIMHWriter(root, height=4, width=5, channels=2, params=PARAMS, split_sizes={"train": 1})
    assert (root / "train").read_bytes() == before
    # A failure half-way leaves neither a partial dataset nor temporary folders behind.
    target = tmp_path / "new"
    with (
        pytest.raises(ValueError, match="not complete"),
        VIMHWriter(
            target, height=4, width=5, channels=2, params=PARAMS, split_sizes={"train": 3}
        ) as w,
    ):
        w.write("train", np.zeros((1, 2, 4, 5), np.uint8), np.zeros((1, 2), np.uint8), 0, 1)
        w.finish({})
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    # Replacing works when asked.
    write_dataset(tmp_path / "ds2")
    with VIMHWriter(
        root,
        height=4,
        width=5,
        channels=2,
        params=PARAMS,
        split_sizes={"train": 1, "test": 1},
        overwrite=True,
    ) as w:
        w.write("train", np.ones((1, 2, 4, 5), np.uint8), np.zeros((1, 2), np.uint8), 0, 1)
        w.write("test", np.ones((1, 2, 4, 5), np.uint8), np.zeros((1, 2), np.uint8), 0, 1)
        w.finish(make_info("ds", 4, 5, 2, {"train": 1, "test": 1}))
    assert len(VIMHDataset(root)["train"]) == 1


def test_reads_read_only_folder(tmp_path):
    root = tmp_path / "ro"
    data = write_dataset(root)
    for p in root.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IRGRP)
    root.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        ds = VIMHDataset(root)
        np.testing.assert_array_equal(ds["train"].images, data["train"][0])
        assert ds["train"].values().shape == (7, 2)
    finally:
        root.chmod(stat.S_IRWXU)
        for p in root.iterdir():
            p.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert sorted(p.name for p in root.iterdir()) == sorted(["train", "val", "test", INFO_FILENAME])


def test_param_spec_codes_round_trip_classes():
    for spec in (
        ParamSpec("a", 0, 1, 0.125),
        ParamSpec("b", 48, 72, 3),
        ParamSpec("c", 0, 127, 1),
        ParamSpec("d", 0.1, 0.8, 0.1),
    ):
        spec.check_codes_exact()
        k = np.arange(spec.num_classes)
        np.testing.assert_array_equal(spec.encode(spec.class_value(k)), spec.class_code(k))
    with pytest.raises(ValueError, match="too many for 8-bit"):
        ParamSpec("e", 0, 199, 1).check_codes_exact()
    ParamSpec("e", 0, 255, 1).check_codes_exact()  # 256 classes: K - 1 divides 255, exact
    log = ParamSpec("f", 100, 1600, 100, scale="log")
    np.testing.assert_allclose(log.to_unit([100, 400, 1600]), [0, 0.5, 1])
    np.testing.assert_allclose(log.from_unit(log.to_unit([123.0])), [123.0])


@pytest.mark.parametrize(
    "spec",
    [
        ParamSpec("pitch", 36, 84, 1),  # the default saw's heads: linear and log axes
        ParamSpec("level", -40, 0, 2),
        ParamSpec("decay", 4, 128, 0.25, scale="log"),
        ParamSpec("env_attack", 0.01, 0.32, 1, scale="log"),
        ParamSpec("resonance", 0.0, 0.8, 0.1),
    ],
    ids=lambda s: f"{s.name}-{s.scale}",
)
def test_every_grid_value_round_trips_to_its_class(spec):
    """A class's grid value is its class again: directly, through its 8-bit code, and through
    a head's decoding; one class step on a log axis is a ratio (2 ** step), not `step` units."""
    from src.models.heads import build_head

    k = np.arange(spec.num_classes)
    values = spec.class_value(k)
    np.testing.assert_array_equal(spec.class_index(values), k)
    np.testing.assert_array_equal(spec.class_index(spec.decode(spec.encode(values))), k)
    np.testing.assert_allclose(values[[0, -1]], [spec.min, spec.max], rtol=1e-9, atol=1e-12)
    steps = values[1:] / values[:-1] if spec.scale == "log" else np.diff(values)
    np.testing.assert_allclose(steps, 2**spec.step if spec.scale == "log" else spec.step)
    head = build_head(spec, "classification", in_features=2)
    logits = torch.nn.functional.one_hot(torch.from_numpy(k), spec.num_classes).float()
    decoded, classes = head.decode(logits)
    np.testing.assert_array_equal(classes.numpy(), k)
    np.testing.assert_allclose(decoded.numpy(), values, rtol=1e-6, atol=1e-6)


def test_parse_folder_name():
    p = parse_folder_name("vimh-32x32_8000Hz_1p0s_256dss_resonarium_2p")
    assert (p.height, p.width, p.channels, p.samples, p.synth, p.params) == (
        32,
        32,
        None,
        256,
        "resonarium",
        2,
    )
    assert parse_folder_name("vimh-16x64x3_16000Hz_0p25s_1000dss_moog_ladder_5p").duration == 0.25
    assert parse_folder_name("my-data") is None


def test_open_does_not_scale_with_python_per_record(tmp_path):
    """Opening maps the file; headers are checked with array operations (a smoke check)."""
    root = tmp_path / "big"
    n = 20000
    with VIMHWriter(
        root, height=8, width=8, channels=1, params=PARAMS, split_sizes={"train": n, "test": 10}
    ) as w:
        w.write("train", np.zeros((n, 1, 8, 8), np.uint8), np.zeros((n, 2), np.uint8), 0, 1)
        w.write("test", np.zeros((10, 1, 8, 8), np.uint8), np.zeros((10, 2), np.uint8), 0, 1)
        w.finish(make_info("big", 8, 8, 1, {"train": n, "test": 10}))
    ds = VIMHDataset(root)
    assert isinstance(ds["train"].records, np.memmap)
    assert os.path.getsize(root / "train") == n * (15 + 4 + 64)


def test_nsmt_step_that_does_not_divide_the_range_counts_as_nsmt(tmp_path, caplog):
    """NSMT's own datasets use e.g. velocity 100-127 step 5: K = round(27 / 5) + 1 = 6 classes,
    class = clamp(round((v - 100) / 5), 0, 5); accepted with one warning naming the parameter."""
    info = nsmt_info()
    info["parameter_names"] = ["pitch", "velocity"]
    info["parameter_mappings"] = {
        "pitch": {"min": 48, "max": 72, "step": 3, "description": "note"},
        "velocity": {"min": 100, "max": 127, "step": 5, "description": "MIDI velocity"},
    }
    root = write_handmade(tmp_path / "d", info=info)
    for _ in range(2):  # opened twice, warned once
        ds = VIMHDataset(root)
    vel = ds.params[1]
    assert vel.num_classes == 6
    # codes 255 (127), 36 (~103.8), 0 (100) -> classes 5 (clamped from round(5.4)), 1, 0
    codes = np.array([255, 36, 0])
    assert vel.class_index(vel.decode(codes)).tolist() == [5, 1, 0]
    assert vel.class_value(np.arange(6)).tolist() == [100, 105, 110, 115, 120, 125]
    warnings = [r for r in caplog.records if "velocity" in r.getMessage()]
    assert len(warnings) == 1 and "6 classes" in warnings[0].getMessage()
