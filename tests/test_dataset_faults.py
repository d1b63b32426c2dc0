"""Datasets under faults, through the entry points: mistyped folders, empty splits, messages
that name the real cause, permissions, what a killed generation leaves, symlinked datasets,
and two runs that need the same missing dataset at once."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import src.data.provision as provision_module
import src.generate as generate_module
from src.data.provision import dataset_folder
from src.data.vimh import INFO_FILENAME, VIMHDataset, VIMHWriter, dataset_lock
from src.errors import ConfigError, DataError, DatasetNotFoundError
from src.eval import evaluate
from src.generate import generate_dataset
from src.generation.recipe import dataset_path, recipe_config
from src.paths import PROJECT_ROOT
from src.train import train
from src.utils.config import compose_config as compose
from tests.helpers.entry import assert_clean_error, run_script, script_env, start
from tests.helpers.runs import QUIET, on, raises_user_error
from tests.helpers.vimh import make_vimh

# A small, fast recipe: 64 records of 16x16, no identifiability sweep.
SMALL = [
    "dataset.size=64",
    "dataset.batch_size=32",
    "spectrogram.height=16",
    "spectrogram.width=16",
    "identifiability.enabled=false",
]


# The same as a data config's recipe (as `data=saw` with these overrides gives it).
RECIPE = {
    "synth": "saw",
    "spectrogram": "mel",
    "overrides": SMALL[2:],
    "dataset": {"size": 64, "seed": 42, "batch_size": 32},
}


def generate_cfg(out_dir: Path, *overrides: str):
    return compose("generate", [*SMALL, f"dataset.out_dir={out_dir}", *overrides])


def without_records(toy: Path, tmp_path: Path, split: str) -> Path:
    """A copy of the toy whose `split` file is empty (its JSON count says 0, as a generator
    asked for no records there would write it)."""
    folder = tmp_path / f"empty_{split}"
    shutil.copytree(toy, folder, ignore=shutil.ignore_patterns("*_audio.npy"))
    (folder / split).write_bytes(b"")
    info = json.loads((folder / INFO_FILENAME).read_text())
    info[f"{split}_samples"] = 0
    info["audio"] = {"stored": False}
    (folder / INFO_FILENAME).write_text(json.dumps(info))
    return folder


def test_an_empty_test_split_is_refused_before_training(toy, tmp_path, compose_cfg):
    folder = without_records(toy, tmp_path, "test")
    cfg = compose_cfg("train", [*on(folder), *QUIET])
    with raises_user_error(DataError, match=f"{folder / 'test'}: the test split is empty"):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_an_empty_test_split_is_a_clear_error_at_eval(toy, tmp_path, compose_cfg, trained_ckpt):
    folder = without_records(toy, tmp_path, "test")
    overrides = [*on(folder), f"ckpt_path={trained_ckpt}", "logger=none"]
    cfg = compose_cfg("eval", overrides, out="eval")
    with raises_user_error(DataError, match="the test split is empty"):
        evaluate(cfg)


def test_an_empty_train_split_is_refused(toy, tmp_path, compose_cfg):
    folder = without_records(toy, tmp_path, "train")
    with raises_user_error(DataError, match="the train split is empty"):
        train(compose_cfg("train", [*on(folder), "debug=fdr"]))


def test_an_empty_val_split_falls_back_to_carving_val_from_train(
    toy, tmp_path, compose_cfg, caplog
):
    folder = without_records(toy, tmp_path, "val")
    with caplog.at_level(logging.WARNING):
        metrics, objects = train(compose_cfg("train", [*on(folder), "debug=fdr"]))
    assert "is empty (0 records): treating the dataset as having no val file" in caplog.text
    dm = objects["datamodule"]
    assert dm.val_carved and dm.num_records("val") + dm.num_records("train") == 768
    assert "test/score" in metrics


def test_a_missing_split_is_named_before_the_folder_name(tmp_path):
    folder = make_vimh(tmp_path)  # a standard name: ..._96dss_toy_2p
    (folder / "test").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"test: no such split file, but .* = 16"):
        VIMHDataset(folder)
    info = json.loads((folder / INFO_FILENAME).read_text())
    del info["test_samples"]  # no count to blame: the name check says what is there
    (folder / INFO_FILENAME).write_text(json.dumps(info))
    with pytest.raises(DataError, match=r"samples 96 but .* 80 \(train 64, val 16, no test file"):
        VIMHDataset(folder)


def test_a_recipe_without_test_records_is_refused_at_generation(tmp_path):
    cfg = generate_cfg(tmp_path, "dataset.splits={train: 0.9, val: 0.1, test: 0.0}")
    with raises_user_error(ConfigError, match=r"dataset.splits.test must be > 0"):
        generate_dataset(cfg)
    assert not any(tmp_path.iterdir())


def test_min_above_max_is_reported_as_such(tmp_path):
    cfg = generate_cfg(tmp_path, "synth.params.pitch.min=80", "synth.params.pitch.max=40")
    with raises_user_error(ConfigError, match=r"synth.params.pitch: min \(80.0\) is above max"):
        generate_dataset(cfg)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_datasets_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        folder = generate_dataset(generate_cfg(tmp_path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_what_a_killed_generation_left_is_reported_and_removed(tmp_path, caplog):
    cfg = generate_cfg(tmp_path)
    target = dataset_path(cfg)
    # A writer that died mid-way: its temporary folder stays; the kernel drops its lock.
    killed = VIMHWriter(target, height=4, width=4, channels=1, params=[], split_sizes={"train": 1})
    killed._lock.close()
    older = [tmp_path / f".{target.name}.abc123xy", tmp_path / f".{target.name}.old-4242"]
    for folder in older:  # an older writer's names for the same leftovers
        folder.mkdir()
    assert len(list(tmp_path.glob(f".{target.name}.*"))) == 3
    with caplog.at_level(logging.WARNING):
        generate_dataset(cfg)
    assert "Removing 3 folder(s) left beside" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert VIMHDataset(target)


def test_overwriting_a_symlinked_dataset_keeps_the_link(tmp_path):
    store = generate_dataset(generate_cfg(tmp_path / "store", "dataset.name=real"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "linked").symlink_to(store)
    generate_dataset(
        generate_cfg(data, "dataset.name=linked", "dataset.seed=7", "dataset.overwrite=true")
    )
    assert (data / "linked").is_symlink() and (data / "linked").resolve() == store
    assert json.loads((store / INFO_FILENAME).read_text())["seed"] == 7
    assert [p.name for p in data.iterdir()] == ["linked"]
    assert [p.name for p in store.parent.iterdir()] == ["real"]


def test_runs_needing_the_same_missing_dataset_wait_for_one_generation(tmp_path, monkeypatch):
    """In one process (threads): the quick check of the lock; the test below uses processes."""
    made = []
    real = provision_module.generate_dataset
    monkeypatch.setattr(provision_module, "generate_dataset", lambda c: made.append(real(c)))
    data_cfg = OmegaConf.create({"_target_": "x", "recipe": RECIPE})
    found = []
    threads = [
        threading.Thread(target=lambda: found.append(dataset_folder(data_cfg, tmp_path)))
        for _ in range(2)
    ]
    with dataset_lock(dataset_path(recipe_config(RECIPE, out_dir=tmp_path))):
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert not made  # both wait while the lock is held
    for t in threads:
        t.join(timeout=120)
    assert len(made) == 1 and found == [made[0], made[0]]
    assert [p.name for p in tmp_path.iterdir()] == [made[0].name]


@pytest.mark.slow
def test_two_runs_needing_the_same_missing_dataset_share_it_not_a_folder(tmp_path):
    """The second waits for the first's generation and uses it; each has its own run folder."""
    recipe = [f'"{o}"' for o in SMALL[2:]]
    args = [
        "debug=fdr",
        "data.recipe.dataset.size=64",
        "+data.recipe.dataset.batch_size=32",
        f"data.recipe.overrides=[{','.join(recipe)}]",
        f"paths.log_dir={tmp_path}/logs",
        f"paths.data_dir={tmp_path}/data",
    ]
    folder = dataset_path(recipe_config(RECIPE, out_dir=tmp_path / "data"))
    runs = tmp_path / "logs" / "debug" / "runs"
    with dataset_lock(folder):  # both runs start while a generation is under way
        procs = [start("src/train.py", *args), start("src/train.py", *args)]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            logs = [p.read_text() for p in runs.glob("*/debug.log")]
            if sum("Waiting for another process" in text for text in logs) == 2:
                break
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.2)
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    logs = sorted(p.read_text() for p in runs.glob("*/debug.log"))
    assert len(logs) == 2  # two run folders
    assert sum("not found: generating it" in text for text in logs) == 1
    assert sum("was generated by another run: using it" in text for text in logs) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == [folder.name]


def test_a_dataset_too_large_for_the_disk_or_memory_is_refused_before_anything_is_made(
    tmp_path, monkeypatch
):
    """The probe's `dataset.size=1000000000000` grew memory for a minute and a half: now the
    bytes are estimated first (parts and joined dataset on disk, labels and batch plan in
    memory) and the run ends with one line, having allocated and written nothing."""
    cfg = generate_cfg(tmp_path / "data", "dataset.size=1000000000000")
    tracemalloc.start()
    try:
        with raises_user_error(
            ConfigError,
            match=r"dataset.size=1,000,000,000,000: about .* GiB "
            r"needed on disk .* free; generate fewer records",
        ):
            generate_dataset(cfg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"
    assert not (tmp_path / "data").exists()
    # Room on disk but not in memory: the same refusal, for memory.
    monkeypatch.setattr(generate_module, "available_memory", lambda: 2**20)
    cfg = generate_cfg(tmp_path / "data", "dataset.size=1000000")
    with raises_user_error(ConfigError, match=r"about 0.0 GiB of memory needed .* is available"):
        generate_dataset(cfg)
    assert not (tmp_path / "data").exists()
    # Through the command line: one line, exit status 1.
    result = run_script(
        "generate_vimh.py",
        "dataset.size=1000000000000",
        f"dataset.out_dir={tmp_path}/cli",
        f"hydra.run.dir={tmp_path}/hydra",
    )
    assert_clean_error(result, "dataset.size=1,000,000,000,000: about", "GiB free")
    assert not (tmp_path / "cli").exists()


def test_two_generations_of_the_same_recipe_take_turns(tmp_path, caplog):
    """Two generations of one recipe at once (threads here; processes in the slow test below):
    the second waits on the dataset's lock, then uses what the first wrote. Both rendered
    everything before, and the second died on a part file the first had joined and removed."""
    cfgs = [generate_cfg(tmp_path) for _ in range(2)]
    target = dataset_path(cfgs[0])
    made, errors = [], []

    def run(cfg):
        try:
            made.append(generate_dataset(cfg))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in cfgs]
    with caplog.at_level(logging.INFO):
        with dataset_lock(target):
            for t in threads:
                t.start()
            time.sleep(0.5)
            assert not made and not errors  # both wait while the lock is held
        for t in threads:
            t.join(timeout=120)
    assert not errors and made == [target, target]
    assert caplog.text.count("Waiting for another process to finish writing") == 2
    assert caplog.text.count("generated by another process meanwhile: using it") == 1
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no parts, no lock left
    assert VIMHDataset(target)


@pytest.mark.slow
def test_two_generate_processes_of_the_same_recipe_make_one_dataset(tmp_path):
    """The probe's case: `generate_vimh.py` twice at once, each a process (its log on stdout,
    kept in a file here so it can be read while it runs)."""
    cmd = [sys.executable, str(PROJECT_ROOT / "generate_vimh.py"), *SMALL]
    cmd.append(f"dataset.out_dir={tmp_path}/data")
    target = dataset_path(generate_cfg(tmp_path / "data"))
    outs = [tmp_path / f"out{i}.txt" for i in range(2)]
    with dataset_lock(target):  # both start while a generation of the recipe is under way
        procs = []
        for out in outs:
            with open(out, "w") as f:
                procs.append(subprocess.Popen(cmd, stdout=f, stderr=f, env=script_env()))
        deadline = time.monotonic() + 240
        while sum("Waiting for another process" in o.read_text() for o in outs) < 2:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.2)
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [o.read_text() for o in outs]
    logs = [o.read_text() for o in outs]
    assert not any("Traceback" in text for text in logs), logs
    assert sum("generated by another process meanwhile: using it" in t for t in logs) == 1
    assert [p.name for p in (tmp_path / "data").iterdir()] == [target.name]
    assert VIMHDataset(target)


def test_a_data_dir_naming_a_file_says_it_is_a_file(toy, tmp_path, compose_cfg):
    info = toy / INFO_FILENAME
    cfg = compose_cfg("train", [*on(info), *QUIET])
    with raises_user_error(DataError, match=rf"data.data_dir={info} is a file, not a dataset "):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))
    with raises_user_error(DataError, match=rf"e.g. {toy}\)"):
        dataset_folder(OmegaConf.create({"data_dir": str(info)}), tmp_path / "data")
    assert not (tmp_path / "data").exists()  # no generate command was run or suggested


@pytest.mark.parametrize("value", ["-1", "nan", "true", "inf"])
def test_a_memory_budget_that_is_not_a_size_is_refused(toy, compose_cfg, value):
    cfg = compose_cfg("train", [*on(toy), f"data.max_memory_gb={value}", *QUIET])
    with raises_user_error(ConfigError, match=r"data.max_memory_gb must be a .*number of GiB"):
        train(cfg)


def test_an_empty_val_file_the_json_still_counts_is_refused(toy, tmp_path, compose_cfg):
    """Only an empty val file the JSON counts as 0 stands for no val file (carved from train,
    above); one the JSON counts records for is a damaged copy, named as such."""
    folder = tmp_path / "truncated_val"
    shutil.copytree(toy, folder)
    (folder / "val").write_bytes(b"")
    cfg = compose_cfg("train", [*on(folder), *QUIET])
    said = r"val: holds 0 records but .* says val_samples = 128: the folder is damaged"
    with raises_user_error(DataError, match=said + r".*only where the JSON counts 0"):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))
