"""From a data config to a datamodule: the dataset folder, generated on first use.

A data config gives its dataset in exactly one of two ways:
- `recipe`: how to generate it (see `src/generation/recipe.py`). The folder is
  `<paths.data_dir>/<dataset_name(recipe)>`; it is generated there if missing, and an existing
  one must carry the recipe's digest in its JSON.
- `data_dir`: an existing folder (ours or NSMT's), used as it is and never generated.
Generation is atomic (the writer renames a finished folder into place) and the result is
opened before use; a folder that does not open is removed, so nothing half-made or
mismatching is left behind to be picked up later.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.data.vimh import INFO_FILENAME, VIMHDataset
from src.errors import ConfigError, DataError, DatasetNotFoundError
from src.generate import generate_dataset
from src.generation.recipe import dataset_path, recipe_config, recipe_digest
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def dataset_folder(data_cfg: DictConfig, data_root: str | Path, generate: bool = True) -> Path:
    """The folder `data_cfg` means, generated first when its recipe's dataset is missing (and
    `generate`; without it only the path is worked out, e.g. for reports on a finished run)."""
    data_dir, recipe = data_cfg.get("data_dir"), data_cfg.get("recipe")
    if data_dir and recipe:
        raise ConfigError(
            f"data.data_dir={data_dir} and data.recipe are both set: give one. For an existing "
            f"folder use data=vimh data.data_dir=... (or add data.recipe=null); for a generated "
            f"dataset leave data.data_dir=null and the folder is named from the recipe"
        )
    if data_dir:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"data.data_dir={folder}: no such dataset folder. Folders given by path are "
                f"never generated; to generate one, use a data config with a recipe (e.g. "
                f"data=saw) or run: python generate_vimh.py dataset.out_dir={folder.parent} "
                f"dataset.name={folder.name} [synth=... dataset.size=...]"
            )
        return folder
    if not recipe:
        raise ConfigError("the data config gives neither data.data_dir nor data.recipe")
    gen_cfg = recipe_config(recipe, out_dir=data_root)
    return provide(gen_cfg) if generate else dataset_path(gen_cfg)


def provide(gen_cfg: DictConfig) -> Path:
    """The dataset of a generation config: checked if it exists, else generated and checked."""
    folder = dataset_path(gen_cfg)
    digest = recipe_digest(gen_cfg)
    if folder.exists():
        check_digest(folder, digest)
        return folder
    log.info(f"Dataset {folder} not found: generating it from the recipe")
    generate_dataset(gen_cfg)
    try:
        VIMHDataset(folder)
        check_digest(folder, digest)
    except DataError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def check_digest(folder: Path, digest: str) -> None:
    """An existing recipe folder must have been made from this recipe."""
    info = folder / INFO_FILENAME
    try:
        found = json.loads(info.read_text()).get("recipe_digest")
    except (OSError, ValueError, AttributeError):
        found = None
    if found != digest:
        raise DataError(
            f"{folder} exists but was not generated from this recipe ({INFO_FILENAME} has "
            f"recipe_digest {found!r}, the recipe's is {digest!r}). Remove the folder to "
            f"regenerate it, or use it as it is with data=vimh data.data_dir={folder}"
        )


def build_datamodule(data_cfg: DictConfig, data_root: str | Path):
    """Provide the dataset, then instantiate the datamodule on its folder."""
    folder = dataset_folder(data_cfg, data_root)
    node = OmegaConf.to_container(data_cfg, resolve=True)
    node.pop("recipe", None)
    node["data_dir"] = str(folder)
    return instantiate(node)
