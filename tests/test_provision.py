"""Dataset identity: the recipe names the folder, provisioning generates it once, and nothing
half-made or mismatching is used or left behind."""

from __future__ import annotations

import json
import re

import pytest
from omegaconf import OmegaConf

from src.data.provision import build_datamodule, dataset_folder
from src.data.vimh import INFO_FILENAME, VIMHDataset
from src.errors import ConfigError, DataError, DatasetNotFoundError
from src.generate import generate_dataset
from src.generation import renderer as renderer_module
from src.generation.recipe import dataset_name, recipe_config, recipe_digest
from src.utils.config import compose_config

# A small, fast recipe: 16x16 images, no identifiability sweep.
SMALL = {
    "synth": "saw",
    "spectrogram": "mel",
    "dataset": {"size": 64, "seed": 42, "batch_size": 32},
    "overrides": [
        "spectrogram.height=16",
        "spectrogram.width=16",
        "identifiability.enabled=false",
    ],
}


def data_cfg(**recipe_changes):
    recipe = OmegaConf.merge(SMALL, recipe_changes)
    return OmegaConf.create({"_target_": "src.data.datamodule.VIMHDataModule", "recipe": recipe})


def test_the_name_is_derived_from_the_recipe(tmp_path):
    gen = recipe_config(SMALL, out_dir=tmp_path)
    name = dataset_name(gen)
    assert re.fullmatch(r"vimh-16x16x1_8000Hz_1p0s_64dss_saw-[0-9a-f]{8}_3p", name)
    # Every field that shapes the records changes the digest; where it goes does not.
    for change in ({"seed": 1}, {"store_audio": True}, {"batch_size": 16}):
        other = recipe_config(OmegaConf.merge(SMALL, {"dataset": change}), out_dir=tmp_path)
        assert recipe_digest(other) != recipe_digest(gen), change
    quieter = recipe_config(
        OmegaConf.merge(SMALL, {"nuisance": {"noise_db": [-80, -70]}}), tmp_path
    )
    assert recipe_digest(quieter) != recipe_digest(gen)  # the nuisance shapes records too
    moved = recipe_config(SMALL, out_dir=tmp_path / "elsewhere")
    assert recipe_digest(moved) == recipe_digest(gen)
    # 1 and 1.0 make the same records, so the same name.
    same = recipe_config(OmegaConf.merge(SMALL, {"dataset": {"duration": 1}}), out_dir=tmp_path)
    assert dataset_name(same) == name


def test_generate_and_training_agree_on_the_folder(tmp_path):
    """The reported bug: `generate` with dataset.size=64 wrote under the 16384 name, and the
    bad folder was then used. Now generate_vimh.py and a data config with the same recipe
    name the same folder, and the size is in it."""
    cli = compose_config(
        "generate",
        [
            "dataset.size=64",
            "dataset.batch_size=32",
            f"dataset.out_dir={tmp_path}",
            *SMALL["overrides"],
        ],
    )
    made = generate_dataset(cli)
    assert "_64dss_" in made.name
    stamp = (made / "train").stat().st_mtime_ns
    found = dataset_folder(data_cfg(), tmp_path)
    assert found == made and (made / "train").stat().st_mtime_ns == stamp  # used, not redone
    dm = build_datamodule(data_cfg(), tmp_path)
    assert dm.num_records("train") + dm.num_records("val") + dm.num_records("test") == 64
    # The default size is another recipe: another folder, generated beside it.
    bigger = dataset_folder(data_cfg(dataset={"size": 96}), tmp_path)
    assert bigger != made and len(VIMHDataset(bigger)["train"]) == 96 - 2 * 10


def test_generated_once_then_reused(tmp_path, monkeypatch):
    first = dataset_folder(data_cfg(), tmp_path)
    info = json.loads((first / INFO_FILENAME).read_text())
    assert info["recipe_digest"] == recipe_digest(recipe_config(SMALL, out_dir=tmp_path))

    def fail(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr("src.data.provision.generate_dataset", fail)
    assert dataset_folder(data_cfg(), tmp_path) == first


def test_a_mismatching_folder_is_refused_not_used(tmp_path):
    folder = dataset_folder(data_cfg(), tmp_path)
    info = json.loads((folder / INFO_FILENAME).read_text())
    info["recipe_digest"] = "00000000"
    (folder / INFO_FILENAME).write_text(json.dumps(info))
    with pytest.raises(DataError, match=r"not generated from this recipe.*Remove the folder"):
        dataset_folder(data_cfg(), tmp_path)
    assert json.loads((folder / INFO_FILENAME).read_text())["recipe_digest"] == "00000000"


def test_a_failed_generation_leaves_no_dataset_and_the_next_try_resumes(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = renderer_module.Renderer.render

    def flaky(self, codes, generator):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed mid-way")
        return original(self, codes, generator)

    monkeypatch.setattr(renderer_module.Renderer, "render", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        dataset_folder(data_cfg(), tmp_path)
    # no dataset folder and no temporary one: only the hidden folder of finished parts
    (parts,) = tmp_path.iterdir()
    assert parts.name.startswith(".parts-vimh-")
    assert sorted(p.name for p in parts.iterdir()) == ["manifest.json", "train-000000.rec"]
    calls["n"] = 10
    assert VIMHDataset(dataset_folder(data_cfg(), tmp_path))  # the next try completes ...
    assert calls["n"] == 10 + 3  # ... rendering only the 3 of 4 batches that were missing
    assert [p.name for p in tmp_path.iterdir()] == [parts.name.removeprefix(".parts-")]


def test_folder_or_recipe_never_both(tmp_path):
    both = OmegaConf.merge(data_cfg(), {"data_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="both set"):
        dataset_folder(both, tmp_path)
    neither = OmegaConf.create({"data_dir": None, "recipe": None})
    with pytest.raises(ConfigError, match="neither"):
        dataset_folder(neither, tmp_path)
    missing = OmegaConf.create({"data_dir": str(tmp_path / "typo"), "recipe": None})
    with pytest.raises(DatasetNotFoundError, match="never generated"):
        dataset_folder(missing, tmp_path)
    assert not (tmp_path / "typo").exists()


def test_recipe_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.recipe\.dataset: .*sizee"):
        recipe_config({"dataset": {"sizee": 3}}, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"unknown keys \['synthh'\]"):
        recipe_config({"synthh": "saw"}, out_dir=tmp_path)
    with pytest.raises(ConfigError, match="cannot compose"):
        recipe_config({"synth": "nope"}, out_dir=tmp_path)
