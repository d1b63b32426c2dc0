"""The VIMH reader and writer, byte by byte, and every bad input the reader must name."""

import json
import os
import stat
import struct

import numpy as np
import pytest

from src.data.vimh import (
    INFO_FILENAME,
    ParamSpec,
    VIMHDataset,
    VIMHFormatError,
    VIMHWriter,
    build_info,
    dataset_folder_name,
    parse_folder_name,
    read_info,
)

PARAMS = [ParamSpec("pitch", 48.0, 72.0, 3.0, unit="midi"), ParamSpec("level", -21.0, 0.0, 3.0)]


def nsmt_info(h=2, w=3, c=1, version="2.1", n_train=2, n_test=1):
    """The JSON keys NSMT writes, for a 2-parameter dataset."""
    return {
        "format": "VIMH",
        "version": version,
        "dataset_name": "handmade",
        "height": h,
        "width": w,
        "channels": c,
        "channel_labels": ["Gray"],
        "varying_parameters": 2,
        "parameter_names": ["pitch", "level"],
        "parameter_mappings": {
            "pitch": {"min": 48, "max": 72, "step": 3, "description": "note"},
            "level": {"min": -21, "max": 0, "step": 3, "description": "dB"},
        },
        "fixed_parameters": {},
        "train_samples": n_train,
        "test_samples": n_test,
        "sample_rate": 8000,
        "duration": 1.0,
        "synth_type": "simple",
        "spectrogram_config": {},
        "label_encoding": {"format": "...", "metadata_bytes": 14},
    }


def record(version, h, w, c, pairs, pixels, spec=(-80.0, 0.0)):
    """One record packed by hand with struct (independent of the numpy dtype under test)."""
    out = struct.pack("<HHH", h, w, c)
    if version == "2.1":
        out += struct.pack("<ff", *spec)
    out += bytes([len(pairs)]) + b"".join(bytes(p) for p in pairs) + bytes(pixels)
    return out


def write_handmade(root, version="2.1", records=None, info=None):
    root.mkdir(parents=True, exist_ok=True)
    h, w, c = 2, 3, 1
    if records is None:
        records = {
            "train": [
                record(version, h, w, c, [(0, 0), (1, 255)], range(6)),
                record(version, h, w, c, [(0, 127), (1, 36)], range(10, 16)),
            ],
            "test": [record(version, h, w, c, [(1, 72), (0, 255)], [255] * 6)],
        }
    for split, recs in records.items():
        (root / split).write_bytes(b"".join(recs))
    (root / INFO_FILENAME).write_text(json.dumps(info or nsmt_info(h, w, c, version)))
    return root


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


def make_info(name, h, w, c, sizes, params=PARAMS):
    return build_info(
        dataset_name=name,
        height=h,
        width=w,
        channels=c,
        channel_labels=["power"] * c,
        params=params,
        fixed_parameters={"attack": {"value": 0.005, "description": "s"}},
        split_sizes=sizes,
        sample_rate=8000,
        duration=1.0,
        synth_type="saw",
        spectrogram_config={"kind": "test"},
        extra={"seed": 7},
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


# --- bad input ---------------------------------------------------------------------------------
def test_truncated_file_names_file_and_sizes(tmp_path):
    root = write_handmade(tmp_path / "t")
    data = (root / "train").read_bytes()
    (root / "train").write_bytes(data[:-5])
    with pytest.raises(VIMHFormatError, match=r"train: size 45 bytes matches no record layout"):
        VIMHDataset(root)


def test_whole_record_missing_is_caught_by_counts(tmp_path):
    root = write_handmade(tmp_path / "t")
    data = (root / "train").read_bytes()
    (root / "train").write_bytes(data[: len(data) // 2])
    with pytest.raises(VIMHFormatError, match=r"holds 1 records but .* train_samples = 2"):
        VIMHDataset(root)


def test_mismatched_dims_in_a_record(tmp_path):
    v = "2.1"
    good = record(v, 2, 3, 1, [(0, 1), (1, 2)], range(6))
    bad = record(v, 3, 2, 1, [(0, 1), (1, 2)], range(6))
    root = write_handmade(
        tmp_path / "d",
        records={"train": [good, good, bad], "test": [good]},
        info={**nsmt_info(), "train_samples": 3},
    )
    with pytest.raises(VIMHFormatError, match=r"train: record 2 has height=3, expected 2"):
        VIMHDataset(root)


def test_json_dims_disagree_with_records(tmp_path):
    root = write_handmade(tmp_path / "d", info={**nsmt_info(), "width": 4})
    with pytest.raises(VIMHFormatError, match="matches no record layout for 2x4x1"):
        VIMHDataset(root)


def test_unknown_param_id(tmp_path):
    r = record("2.1", 2, 3, 1, [(0, 1), (5, 2)], range(6))
    root = write_handmade(tmp_path / "d", records={"train": [r, r], "test": [r]})
    with pytest.raises(VIMHFormatError, match=r"record 0 has parameter ids \[0, 5\], expected"):
        VIMHDataset(root)


def test_repeated_param_id(tmp_path):
    ok = record("2.1", 2, 3, 1, [(0, 1), (1, 2)], range(6))
    dup = record("2.1", 2, 3, 1, [(1, 1), (1, 2)], range(6))
    root = write_handmade(tmp_path / "d", records={"train": [ok, dup], "test": [ok]})
    with pytest.raises(VIMHFormatError, match="record 1 repeats a parameter id"):
        VIMHDataset(root)


def test_wrong_param_count_in_record(tmp_path):
    r = record("2.0", 2, 3, 1, [(0, 1)], range(8))  # N=1 but JSON has 2 parameters
    root = write_handmade(
        tmp_path / "d",
        "2.0",
        records={"train": [r], "test": [r]},
        info={**nsmt_info(version="2.0"), "train_samples": 1},
    )
    with pytest.raises(VIMHFormatError, match="matches no record layout"):
        VIMHDataset(root)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i.pop("height"), "missing key 'height'"),
        (lambda i: i.update(width="32"), "key 'width' must be int"),
        (lambda i: i.update(channels=0), "key 'channels' must be in 1..65535"),
        (lambda i: i.pop("parameter_names"), "missing key 'parameter_names'"),
        (lambda i: i["parameter_mappings"].pop("level"), "no entry for 'level'"),
        (
            lambda i: i["parameter_mappings"]["pitch"].update(step="3"),
            r"parameter_mappings\['pitch'\]\['step'\] must be a finite number",
        ),
        (
            lambda i: i["parameter_mappings"]["pitch"].update(step=5),
            "step 5.0 does not divide the range",
        ),
        (lambda i: i.update(format="CIFAR"), "key 'format' must be 'VIMH'"),
        (lambda i: i.update(varying_parameters=3), "'varying_parameters' is 3"),
    ],
)
def test_malformed_json_keys(tmp_path, change, message):
    info = nsmt_info()
    change(info)
    root = write_handmade(tmp_path / "d", info=info)
    with pytest.raises(VIMHFormatError, match=message) as e:
        VIMHDataset(root)
    assert INFO_FILENAME in str(e.value)


def test_invalid_json_and_missing_files(tmp_path):
    root = write_handmade(tmp_path / "d")
    (root / INFO_FILENAME).write_text("{not json")
    with pytest.raises(VIMHFormatError, match="not valid JSON"):
        read_info(root)
    with pytest.raises(FileNotFoundError, match="not found"):
        VIMHDataset(tmp_path / "nope")
    root2 = write_handmade(tmp_path / "e")
    (root2 / "train").unlink()
    with pytest.raises(VIMHFormatError, match="no 'train' split"):
        VIMHDataset(root2)


def test_folder_name_must_agree(tmp_path):
    root = write_handmade(tmp_path / "vimh-2x3x1_8000Hz_1p0s_3dss_simple_2p")
    assert len(VIMHDataset(root)["train"]) == 2
    wrong = write_handmade(tmp_path / "vimh-2x3x3_8000Hz_1p0s_3dss_simple_2p")
    with pytest.raises(VIMHFormatError, match="folder name says channels 3 but the dataset has 1"):
        VIMHDataset(wrong)
    nsmt = write_handmade(tmp_path / "vimh-2x3_8000Hz_1p0s_3dss_simple_1p")
    with pytest.raises(VIMHFormatError, match="folder name says parameter count 1"):
        VIMHDataset(nsmt)


def test_ambiguous_layout_needs_version(tmp_path):
    # 1x1x1 with no parameters: one 16-byte 2.1 record whose float bytes also read as the
    # header of a second 8-byte 2.0 record. Only the JSON version can decide; no guessing.
    data = bytes.fromhex("01000100010000000100010001000007")
    info = {
        **nsmt_info(1, 1, 1),
        "parameter_names": [],
        "parameter_mappings": {},
        "varying_parameters": 0,
    }
    for key in ("version", "train_samples", "test_samples"):
        info.pop(key)
    root = tmp_path / "amb"
    root.mkdir()
    (root / "train").write_bytes(data)
    (root / "test").write_bytes(data)
    (root / INFO_FILENAME).write_text(json.dumps(info))
    with pytest.raises(VIMHFormatError, match="fit both layouts"):
        VIMHDataset(root)
    for version, n in (("2.0", 2), ("2.1", 1)):
        (root / INFO_FILENAME).write_text(json.dumps({**info, "version": version}))
        assert len(VIMHDataset(root)["train"]) == n


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
