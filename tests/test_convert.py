"""Recordings -> VIMH (convert_audio.py): both layouts, splits, labels, bad input.

The collection is written by the tests (tests/helpers/words.py): synth notes of four timbres
as "words" in the Speech Commands layout, speakers at three sample rates.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from src.audio.io import load_notes, write_wav
from src.conversion.decode import Decoding
from src.conversion.splits import grouped, stratified
from src.convert import convert_dataset
from src.data.vimh import INFO_FILENAME, VIMHDataset, read_info
from src.data.vimh.classes import MAX_CLASSES
from src.data.vimh.format import VIMHFormatError
from src.errors import ConfigError, DataError, DatasetExistsError
from src.generation.rebuild import imager_from_info
from tests.helpers.entry import assert_clean_error, run_script
from tests.helpers.words import (
    SPEAKERS,
    TEST_SPEAKER,
    VAL_SPEAKER,
    WORDS,
    write_manifest,
)

SMALL = ["dataset.sample_rate=8000", "dataset.duration=0.5", "dataset.batch_size=16"]


@pytest.fixture
def convert(compose_cfg):
    def run(*overrides: str, out: str = "run") -> Path:
        return convert_dataset(compose_cfg("convert", [*SMALL, *overrides], out=out))

    return run


def sources(folder: Path) -> list[dict]:
    with open(folder / "sources.csv") as f:
        return list(csv.DictReader(f))


def test_folder_layout_keeps_the_collections_splits_and_images_like_synthetic_data(
    convert, words, one_thread
):
    root = words[0]
    folder = convert("source=speech_commands", f"source.path={root}", "dataset.store_audio=true")
    ds = VIMHDataset(folder)
    info = json.loads((folder / INFO_FILENAME).read_text())
    assert ds.info.class_names == {"word": WORDS}
    assert ds.params[0].num_classes == len(WORDS) and ds.params[0].unit == "class"
    conv = info["conversion"]
    assert conv["excluded_folders"] == ["_background_noise_"] and conv["skipped"] == 0
    assert conv["file_rates"] == {"8000": 32, "11025": 32, "16000": 32}
    assert conv["padded"] > 0 and conv["cut"] > 0 and conv["groups_across_splits"] == 0
    # The lists decide val and test (one speaker each); the rest is train.
    per_split = {s: len(ds[s]) for s in ds.splits}
    assert per_split == {"train": 64, "val": 16, "test": 16}
    src = sources(folder)
    for r in src:
        expect = {VAL_SPEAKER: "val", TEST_SPEAKER: "test"}.get(r["group"], "train")
        assert r["split"] == expect and r["file"].split("/")[0] == r["word"]
    # Every record holds its file's label, its file imaged by the dataset's own imager, and
    # its waveform, as read by the shared audio I/O (mono, resampled, cut or padded).
    imager = imager_from_info(ds.info)
    for split in ("train", "test"):
        mine = [r for r in src if r["split"] == split]
        classes = ds[split].classes()[:, 0]
        assert [WORDS[c] for c in classes] == [r["word"] for r in mine]
        files = [root / r["file"] for r in mine[:6]]
        notes, _ = load_notes(files, 8000, 4000)
        np.testing.assert_array_equal(ds.audio(split)[:6], notes.numpy())
        with torch.inference_mode():
            np.testing.assert_array_equal(ds[split].images[:6], imager(notes).numpy())
    # Records are shuffled inside a split: no long run of one class.
    train = ds["train"].classes()[:, 0]
    assert (np.diff(train) != 0).sum() > len(train) // 3
    with pytest.raises(DatasetExistsError, match="already holds this conversion"):
        convert("source=speech_commands", f"source.path={root}", "dataset.store_audio=true")


def test_manifest_gives_a_categorical_and_a_numeric_head_and_groups_stay_whole(
    convert, words, tmp_path, one_thread
):
    root, rows = words
    manifest = write_manifest(root.parent / "manifest.csv", rows)
    folder = convert(
        "source=manifest",
        f"source.path={manifest}",
        f"source.root={root}",
        "source.labels={word: {type: categorical}, pitch: {type: numeric, min: 48, max: 72, "
        "step: 1, unit: midi}}",
        "source.group_column=speaker",
        "dataset.splits={train: 0.5, val: 0.25, test: 0.25}",
    )
    ds = VIMHDataset(folder)
    word, pitch = ds.params
    assert (word.name, word.unit, pitch.name, pitch.unit) == ("word", "class", "pitch", "midi")
    assert ds.info.class_names == {"word": WORDS}  # numeric heads have no names
    assert (pitch.min, pitch.max, pitch.num_classes) == (48.0, 72.0, 25)
    by_file = {r["file"]: r for r in rows}
    speakers = {}
    for split in ds.splits:
        mine = [r for r in sources(folder) if r["split"] == split]
        values = ds[split].values()
        truth = np.array([by_file[r["file"]]["pitch"] for r in mine])
        # The nearest of 256 codes: within half a level, and every integer pitch exact.
        assert np.abs(values[:, 1] - truth).max() <= 24 / 255 / 2 + 1e-9
        np.testing.assert_array_equal(ds[split].classes()[:, 1], truth - 48)
        assert [WORDS[c] for c in ds[split].classes()[:, 0]] == [
            by_file[r["file"]]["word"] for r in mine
        ]
        for r in mine:
            assert speakers.setdefault(r["group"], split) == split  # no speaker in two splits
    assert set(speakers) == set(SPEAKERS)
    info = json.loads((folder / INFO_FILENAME).read_text())
    assert info["conversion"]["quantisation"]["pitch"]["class_changes"] == 0
    # The JSON states the nearest code the converter wrote (round, not the generator's floor).
    assert info["label_encoding"]["code_by_parameter"]["pitch"].startswith("q = round(255 * (v")


def test_drawn_splits_are_stratified_seeded_and_group_whole():
    strata = np.repeat(np.arange(4), [40, 20, 12, 8])
    split = stratified(strata, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    for c, n in zip(range(4), (40, 20, 12, 8), strict=True):
        got = [(split[strata == c] == s).sum() for s in ("train", "val", "test")]
        assert got == [round(0.8 * n), round(0.9 * n) - round(0.8 * n), n - round(0.9 * n)]
    assert (stratified(strata, {"train": 0.8, "val": 0.1, "test": 0.1}, 3) == split).all()
    groups = np.array([f"g{i % 25}" for i in range(len(strata))], dtype=object)
    split = grouped(strata, groups, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=0)
    for g in set(groups):
        assert len(set(split[groups == g])) == 1
    share = [(split == s).mean() for s in ("train", "val", "test")]
    assert np.allclose(share, [0.6, 0.2, 0.2], atol=0.06)
    six = np.array([f"s{i % 6}" for i in range(len(strata))], dtype=object)
    split = grouped(strata, six, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
    assert sorted(len(set(six[split == s])) for s in ("train", "val", "test")) == [1, 1, 4]
    two = np.array(["a", "b"] * 40, dtype=object)
    with pytest.raises(DataError, match="2 group"):
        grouped(strata, two, {"train": 0.8, "val": 0.1, "test": 0.1}, 0)


def test_a_corrupt_and_an_empty_file_are_listed_and_skipped_or_refused(
    convert, words, tmp_path, one_thread
):
    root = tmp_path / "words"
    shutil.copytree(words[0], root)
    (root / "saw" / "corrupt_nohash_0.wav").write_bytes(b"RIFF\x00\x00not a wav file")
    write_wav(root / "bell" / "empty_nohash_0.wav", np.zeros(0, np.float32), 8000)
    folder = convert("source=speech_commands", f"source.path={root}")
    info = json.loads((folder / INFO_FILENAME).read_text())["conversion"]
    assert (info["files_listed"], info["records"], info["skipped"]) == (98, 96, 2)
    assert {s["file"] for s in info["skipped_files"]} == {
        "saw/corrupt_nohash_0.wav",
        "bell/empty_nohash_0.wav",
    }
    with open(folder / "skipped.csv") as f:
        skipped = {r["file"]: r["reason"] for r in csv.DictReader(f)}
    assert "no audio samples" in skipped["bell/empty_nohash_0.wav"]
    assert "cannot read" in skipped["saw/corrupt_nohash_0.wav"]
    with pytest.raises(DataError, match=r"2 of 98 files cannot be used.*corrupt_nohash_0"):
        convert(
            "source=speech_commands",
            f"source.path={root}",
            "dataset.on_bad_file=error",
            out="strict",
        )
    assert list((tmp_path / "strict" / "data").iterdir()) == []  # no dataset, no parts left
    (root / "silence").mkdir()
    (root / "silence" / "README.txt").write_text("no audio here")
    with pytest.raises(DataError, match="class folder 'silence' holds no audio"):
        convert("source=speech_commands", f"source.path={root}", out="empty")


def test_bad_manifests_and_labels_are_named(convert, words, tmp_path):
    root, rows = words
    good = "source.labels={word: {type: categorical}}"

    def manifest(name: str, table: list[dict]) -> str:
        return f"source.path={write_manifest(tmp_path / name, table)}"

    base = ["source=manifest", f"source.root={root}"]
    with pytest.raises(DataError, match=r"no column\(s\) \['level'\]"):
        convert(*base, manifest("a.csv", rows), "source.labels={level: {type: categorical}}")
    bad = [dict(r) for r in rows]
    bad[3]["pitch"] = "high"
    with pytest.raises(DataError, match="line 5: 'pitch' = 'high' is not a number"):
        convert(
            *base,
            manifest("b.csv", bad),
            "source.labels={pitch: {type: numeric, min: 0, max: 127, step: 1}}",
        )
    with pytest.raises(DataError, match=r"outside its range \[60.0, 72.0\]"):
        convert(
            *base,
            manifest("c.csv", rows),
            "source.labels={pitch: {type: numeric, min: 60, max: 72, step: 1}}",
        )
    with pytest.raises(ConfigError, match="does not divide"):
        convert(
            *base,
            manifest("d.csv", rows),
            "source.labels={pitch: {type: numeric, min: 48, max: 72, step: 5}}",
        )
    with pytest.raises(DataError, match="'word' = 'saw' is not one of"):
        convert(
            *base,
            manifest("e.csv", rows),
            "source.labels={word: {type: categorical, classes: [bell, hollow, pluck]}}",
        )
    many = [{**r, "word": f"w{i}"} for i, r in enumerate(rows * 3)][: MAX_CLASSES + 1]
    for i, r in enumerate(many):
        r["file"] = f"{i}.wav"
    with pytest.raises(DataError, match=f"{MAX_CLASSES + 1} classes.*at most {MAX_CLASSES}"):
        convert(*base, manifest("f.csv", many), good)
    twice = [rows[0], rows[1], rows[0]]
    with pytest.raises(DataError, match=r"line 4: file .* already listed on line 2"):
        convert(*base, manifest("g.csv", twice), good)
    # A listed file that is not there is skipped and named, like an unreadable one.
    gone = [*rows, {**rows[0], "file": "saw/missing.wav"}]
    folder = convert(*base, manifest("h.csv", gone), good, out="missing")
    info = json.loads((folder / INFO_FILENAME).read_text())["conversion"]
    assert info["skipped_files"] == [{"file": "saw/missing.wav", "reason": "no such file"}]


def test_class_name_tables_are_checked_by_the_reader(convert, words, tmp_path, one_thread):
    folder = convert("source=speech_commands", f"source.path={words[0]}")
    path = folder / INFO_FILENAME
    info = json.loads(path.read_text())
    info["class_names"]["word"] = ["bell", "bell", "pluck", "saw"]
    path.write_text(json.dumps(info))
    with pytest.raises(VIMHFormatError, match=r"class_names\['word'\]: expected 4 distinct"):
        read_info(folder)


def test_the_command_names_a_missing_folder(tmp_path, words):
    result = run_script("convert_audio.py", "source=folder", f"source.path={tmp_path}/nowhere")
    assert_clean_error(result, "nowhere: no such folder")


@pytest.mark.slow
def test_worker_processes_make_the_same_bytes(convert, words):
    one = convert("source=speech_commands", f"source.path={words[0]}", "dataset.store_audio=true")
    two = convert(
        "source=speech_commands",
        f"source.path={words[0]}",
        "dataset.store_audio=true",
        "dataset.workers=2",
        out="workers",
    )
    assert one.name == two.name
    for name in ("train", "val", "test", "train_audio.npy", "sources.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_picked_classes_others_and_a_split_column(convert, words, tmp_path, one_thread):
    root, rows = words
    folder = convert(
        "source=speech_commands",
        f"source.path={root}",
        "source.classes=[saw,bell]",
        "source.others=unknown",
        "source.split_lists=null",
        "source.group_pattern=null",
        out="others",
    )
    ds = VIMHDataset(folder)
    assert ds.info.class_names == {"word": ("saw", "bell", "unknown")}
    counts = json.loads((folder / INFO_FILENAME).read_text())["conversion"]["class_counts"]
    totals = np.sum([counts["word"][s] for s in ds.splits], axis=0)
    assert totals.tolist() == [24, 24, 48]
    # Drawn, stratified: each class cut at 0.8 and 0.9 of its files (24: 19 | 22, 48: 38 | 43).
    assert [counts["word"][s] for s in ("train", "val", "test")] == [
        [19, 19, 38],
        [3, 3, 5],
        [2, 2, 5],
    ]
    # ESC-50 style: folds named in a column, mapped to splits.
    folds = [{**r, "fold": SPEAKERS.index(r["speaker"]) % 3 + 1} for r in rows]
    path = tmp_path / "folds.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(folds[0]))
        w.writeheader()
        w.writerows(folds)
    folder = convert(
        "source=manifest",
        f"source.path={path}",
        f"source.root={root}",
        "source.labels={word: {type: categorical}}",
        "source.split_column=fold",
        "source.split_values={1: train, 2: val, 3: test}",
        out="folds",
    )
    src = sources(folder)
    by_file = {r["file"]: r["fold"] for r in folds}
    assert {r["split"] for r in src} == {"train", "val", "test"}
    for r in src:
        assert r["split"] == {1: "train", 2: "val", 3: "test"}[by_file[r["file"]]]


@pytest.mark.parametrize("source", ["folder", "manifest", "speech_commands"])
def test_every_source_config_composes(compose_cfg, source):
    cfg = compose_cfg("convert", [f"source={source}", "spectrogram=kws_mel40"])
    assert cfg.source.layout in ("folder", "manifest")
    d = Decoding(OmegaConf.to_container(cfg.spectrogram), 16000, 16000)
    imager = d.imager()
    assert (imager.height, imager.width, imager.hop_length) == (40, 101, 160)
