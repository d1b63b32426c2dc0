"""Every bad input the VIMH reader must name: file, field and what was expected."""

import json

import pytest

from src.data.vimh import INFO_FILENAME, VIMHDataset, VIMHFormatError, read_info
from tests.helpers.handmade import nsmt_info, record, write_handmade


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
