"""A dataset's recipe (the composed `configs/generate.yaml`) and the names derived from it.

The recipe is the single source of a generated dataset's identity: its folder name is a
function of it (`dataset_name`), including a digest of everything that shapes the records, so
two recipes never share a folder and a folder never needs restating by hand. Data configs
carry a recipe (`data.recipe`) and `src/data/provision.py` turns it into a folder.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

from src.data.vimh import dataset_folder_name
from src.errors import ConfigError
from src.generation.params import parse_params
from src.utils.config import compose_config

# Bump when a change to the synths, the imager or the sampling changes the bytes a recipe
# makes: the digest (and so the folder name) changes with it, and stale data is not reused.
GENERATOR_VERSION = 2
# Dataset keys that do not change the records (where they go, how fast, what is reported,
# how the work is split).
NOT_RECIPE = (
    "out_dir",
    "name",
    "overwrite",
    "threads",
    "workers",
    "num_shards",
    "shard",
    "assemble_only",
    "log_every",
)
RECIPE_KEYS = ("synth", "spectrogram", "dataset", "nuisance", "overrides")


def compose_generate(overrides: list[str]) -> DictConfig:
    """`configs/generate.yaml` composed with `overrides`, inside a Hydra app or outside one."""
    try:
        return compose_config("generate", overrides)
    except Exception as e:  # Hydra's override and composition errors
        raise ConfigError(f"data.recipe: cannot compose the generation config: {e}") from e


def recipe_config(recipe: Mapping, out_dir: str | Path | None = None) -> DictConfig:
    """The generation config a data config's `recipe` stands for.

    `recipe` = `{synth: <synth config>, spectrogram: <spectrogram config>, dataset: {<dataset
    options>}, nuisance: {<nuisance options>}, overrides: [<any other generate.yaml
    overrides>]}`, every key optional.
    """
    recipe = (
        OmegaConf.to_container(recipe, resolve=True)
        if isinstance(recipe, DictConfig)
        else dict(recipe)
    )
    unknown = set(recipe) - set(RECIPE_KEYS)
    if unknown:
        raise ConfigError(f"data.recipe: unknown keys {sorted(unknown)}; expected {RECIPE_KEYS}")
    overrides = [
        f"{group}={recipe[group]}" for group in ("synth", "spectrogram") if recipe.get(group)
    ]
    overrides += [str(o) for o in recipe.get("overrides") or []]
    cfg = compose_generate(overrides)
    dataset = dict(recipe.get("dataset") or {})
    if out_dir is not None:
        dataset["out_dir"] = str(out_dir)
    for key, changes in (("dataset", dataset), ("nuisance", recipe.get("nuisance") or {})):
        try:
            cfg[key] = OmegaConf.merge(cfg[key], changes)
        except ConfigKeyError as e:
            raise ConfigError(
                f"data.recipe.{key}: {e.msg.splitlines()[0]}; known options: {sorted(cfg[key])}"
            ) from e
    return cfg


def _canonical(obj):
    """Numbers as floats (1 and 1.0 make the same records), containers recursively."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, (int, float)):
        return float(obj) if math.isfinite(obj) else str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    return [_canonical(v) for v in obj]


def recipe_digest(cfg: DictConfig) -> str:
    """8 hex digits of SHA-256 over everything in `cfg` that shapes the records."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    content = {
        "generator_version": GENERATOR_VERSION,
        "synth": OmegaConf.to_container(cfg.synth, resolve=True),
        "spectrogram": OmegaConf.to_container(cfg.spectrogram, resolve=True),
        "nuisance": OmegaConf.to_container(cfg.nuisance, resolve=True),
        "dataset": {k: v for k, v in dataset.items() if k not in NOT_RECIPE},
    }
    text = json.dumps(_canonical(content), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def dataset_name(cfg: DictConfig) -> str:
    """The VIMH folder name of the recipe: `vimh-{H}x{W}x{C}_{SR}Hz_{dur}s_{N}dss_{synth}-
    {digest}_{P}p`; the synth field carries the digest, so the name stays NSMT's pattern."""
    ds, spec = cfg.dataset, cfg.spectrogram
    params = parse_params(OmegaConf.to_container(cfg.synth.params, resolve=True))
    return dataset_folder_name(
        height=int(spec.height),
        width=int(spec.width),
        channels=len(spec.channels),
        sample_rate=int(ds.sample_rate),
        duration=float(ds.duration),
        samples=int(ds.size),
        synth=f"{cfg.synth.name}-{recipe_digest(cfg)}",
        n_params=sum(p.varying for p in params),
    )


def dataset_path(cfg: DictConfig) -> Path:
    """Where the recipe's dataset lives: `dataset.out_dir / (dataset.name or dataset_name)`."""
    return Path(cfg.dataset.out_dir) / (cfg.dataset.name or dataset_name(cfg))
