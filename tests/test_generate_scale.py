"""Generation at scale: the same bytes however the work is split, resuming, refusing foreign
parts, and progress that stays quiet off a terminal."""

from __future__ import annotations

import errno
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from src.errors import ConfigError, DataError, DatasetNotFoundError
from src.generate import generate_dataset
from src.generation import renderer as renderer_module
from src.generation.parts import owner, plan_units, shard_units
from src.generation.progress import GenerationProgress
from src.generation.recipe import dataset_name, recipe_digest
from src.paths import PROJECT_ROOT
from src.utils import files as files_module
from src.utils.config import compose_config

# 96 records in batches of 20: train 76 (4 batches, the last short), val 10, test 10.
SMALL = [
    "dataset.size=96",
    "dataset.batch_size=20",
    "spectrogram.height=16",
    "spectrogram.width=16",
    "identifiability.enabled=false",
    "dataset.name=ds",
]


def cfg(out: Path, *overrides: str):
    return compose_config("generate", [*SMALL, f"dataset.out_dir={out}", *overrides])


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def count_renders(monkeypatch, fail_at: int | None = None) -> dict:
    """Count Renderer.render calls in this process; raise at call `fail_at` (a crash)."""
    calls = {"n": 0}
    original = renderer_module.Renderer.render

    def counted(self, codes, generator):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise RuntimeError("simulated crash")
        return original(self, codes, generator)

    monkeypatch.setattr(renderer_module.Renderer, "render", counted)
    return calls


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The dataset made by one process, audio included."""
    out = tmp_path_factory.mktemp("one")
    return files(generate_dataset(cfg(out, "dataset.store_audio=true")))


def test_workers_and_shards_give_the_same_bytes_as_one_process(tmp_path, reference):
    audio = ["train_audio.npy", "val_audio.npy", "test_audio.npy"]
    assert sorted(reference) == sorted(["train", "val", "test", *audio, "vimh_dataset_info.json"])
    two = generate_dataset(cfg(tmp_path / "two", "dataset.store_audio=true", "dataset.workers=2"))
    assert files(two) == reference
    for shard in (1, 0, 2):  # any order: the run that completes the set assembles
        out = generate_dataset(
            cfg(
                tmp_path / "three",
                "dataset.store_audio=true",
                "dataset.num_shards=3",
                f"dataset.shard={shard}",
            )
        )
        assert out.exists() == (shard == 2)
    assert files(out) == reference
    assert [p.name for p in (tmp_path / "three").iterdir()] == ["ds"]  # parts removed


def test_how_the_work_is_split_does_not_change_the_recipe(tmp_path):
    base = cfg(tmp_path)
    split = cfg(tmp_path, "dataset.workers=4", "dataset.num_shards=8", "dataset.shard=3")
    assert recipe_digest(base) == recipe_digest(split)
    assert dataset_name(cfg(tmp_path, "dataset.name=null")) == dataset_name(
        cfg(tmp_path, "dataset.name=null", "dataset.num_shards=8", "dataset.log_every=1")
    )


def test_resume_after_a_crash_between_shards(tmp_path, reference, monkeypatch):
    shards = [*SMALL[:-1], "dataset.store_audio=true", "dataset.num_shards=3"]
    calls = count_renders(monkeypatch)
    for shard in (0, 1):
        generate_dataset(cfg(tmp_path, *shards, f"dataset.shard={shard}"))
    assert calls["n"] == 4  # 6 batches over 3 shards
    (parts,) = tmp_path.iterdir()  # no dataset yet, only the finished parts
    assert parts.name == ".parts-ds"
    assert len(list(parts.glob("*.rec"))) == 4 and len(list(parts.glob("*.f32"))) == 4
    # shard 2 crashes after its first batch ...
    calls = count_renders(monkeypatch, fail_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_dataset(cfg(tmp_path, *shards, "dataset.shard=2"))
    assert len(list(parts.glob("*.rec"))) == 5
    # ... and the plain command resumes: it renders only the missing batch, then assembles.
    calls = count_renders(monkeypatch)
    out = generate_dataset(cfg(tmp_path, *shards))
    assert calls["n"] == 1
    assert files(out) == reference and not parts.exists()


def test_parts_of_another_config_or_seed_are_refused(tmp_path, monkeypatch, caplog):
    shards = ["dataset.num_shards=2"]
    generate_dataset(cfg(tmp_path, *shards, "dataset.shard=0"))
    parts = tmp_path / ".parts-ds"
    before = files(parts)
    calls = count_renders(monkeypatch)
    with pytest.raises(DataError, match=r"another recipe \(.*seed: parts 42, this run 7"):
        generate_dataset(cfg(tmp_path, *shards, "dataset.shard=1", "dataset.seed=7"))
    with pytest.raises(DataError, match=r"batch_size: parts 20, this run 16.*remove"):
        generate_dataset(cfg(tmp_path, *shards, "dataset.shard=1", "dataset.batch_size=16"))
    with pytest.raises(DataError, match="another recipe"):  # a synth setting, via the digest
        generate_dataset(cfg(tmp_path, *shards, "dataset.shard=1", "synth.params.decay.max=64"))
    assert calls["n"] == 0 and files(parts) == before  # nothing rendered, nothing touched
    # assembling alone needs every part, and says which shard is missing
    with pytest.raises(DataError, match=r"3 of 6 batches are missing.*\[1\] of num_shards=2"):
        generate_dataset(cfg(tmp_path, *shards, "dataset.assemble_only=true"))
    with pytest.raises(DatasetNotFoundError, match="no parts to assemble"):
        generate_dataset(cfg(tmp_path / "elsewhere", "dataset.assemble_only=true"))
    # a folder of parts with no manifest says nothing about its recipe: refused too
    (parts / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"no manifest\.json"):
        generate_dataset(cfg(tmp_path, *shards, "dataset.shard=1"))


def test_shards_cover_every_batch_once():
    units = plan_units({"train": 76, "val": 10, "test": 10}, 20)
    assert [(u.split, u.index, u.start, u.size) for u in units[3:5]] == [
        ("train", 3, 60, 16),
        ("val", 0, 0, 10),
    ]
    for k in (1, 2, 3, 5, 6, 9):
        got = [shard_units(units, k, i) for i in range(k)]
        assert [u for s in got for u in s] == units
        assert max(map(len, got)) - min(map(len, got)) <= 1
        for i, s in enumerate(got):
            assert all(owner(units.index(u), len(units), k) == i for u in s)
    with pytest.raises(ConfigError, match=r"dataset\.shard must be in 0\.\.2"):
        shard_units(units, 3, 3)
    with pytest.raises(ConfigError, match="num_shards must be >= 1"):
        shard_units(units, 0, None)


def test_progress_is_log_lines_off_a_terminal_and_a_live_display_on_one(caplog):
    off = io.StringIO()
    with (
        caplog.at_level(logging.INFO),
        GenerationProgress(
            {"train": 80, "val": 10, "test": 10}, log_every=25, console=Console(file=off)
        ) as p,
    ):
        assert not p.live
        for split, n in [("train", 20)] * 4 + [("val", 10), ("test", 10)]:
            p.advance(split, n)
    assert off.getvalue() == ""  # nothing drawn
    lines = [r.getMessage() for r in caplog.records if "generated" in r.getMessage()]
    # one line each time another 25% is passed (20% is not yet; 90% passes no new step)
    assert [line.split("%")[0].split()[-1] for line in lines] == ["40", "60", "80", "100"]
    assert "100 of 100 records" in lines[-1] and "records/s" in lines[-1]

    on = io.StringIO()
    with GenerationProgress(
        {"train": 80, "test": 0}, console=Console(file=on, force_terminal=True, width=100)
    ) as p:
        assert p.live
        p.advance("train", 80)
    shown = on.getvalue()
    assert "train" in shown and "80/80" in shown and "records/s" in shown and "test" not in shown


def test_generation_logs_progress_when_stderr_is_not_a_terminal(tmp_path, caplog, capsys):
    with caplog.at_level(logging.INFO):
        generate_dataset(cfg(tmp_path, "dataset.log_every=50"))
    lines = [r.getMessage() for r in caplog.records if "] generated " in r.getMessage()]
    assert len(lines) == 2 and "96 of 96 records" in lines[-1]
    assert "records/s" not in capsys.readouterr().err  # no live display in a captured stderr


def test_without_file_locks_shards_leave_the_assembly_to_an_explicit_run(
    tmp_path, monkeypatch, caplog
):
    def no_locks(f, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(files_module.fcntl, "flock", no_locks)
    out = generate_dataset(cfg(tmp_path, "dataset.num_shards=2", "dataset.shard=1"))
    with caplog.at_level(logging.WARNING):
        generate_dataset(cfg(tmp_path, "dataset.num_shards=2", "dataset.shard=0"))
    assert not out.exists() and "assemble_only=true" in caplog.text
    generate_dataset(cfg(tmp_path, "dataset.assemble_only=true"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.slow
def test_a_hydra_multirun_over_the_shard_index_makes_the_dataset(tmp_path, reference):
    """The documented command: one job per shard through Hydra's launcher (basic here)."""
    cmd = [sys.executable, str(PROJECT_ROOT / "generate_vimh.py"), "-m", *SMALL]
    cmd += ["dataset.store_audio=true", f"dataset.out_dir={tmp_path / 'data'}"]
    cmd += ["dataset.num_shards=3", "dataset.shard=range(3)", f"hydra.sweep.dir={tmp_path}/sweep"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    assert files(tmp_path / "data" / "ds") == reference
