"""Glue shared by the entry points: extras, the task wrapper, metric lookup, dataset provision."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def extras(cfg: DictConfig) -> None:
    """Optional conveniences before the task: silence warnings, require tags, print the config."""
    ex = cfg.get("extras")
    if not ex:
        return
    if ex.get("ignore_warnings"):
        log.info("Ignoring Python warnings (extras.ignore_warnings=true)")
        warnings.filterwarnings("ignore")
    if ex.get("enforce_tags") and not cfg.get("tags"):
        raise ValueError("extras.enforce_tags is on but no tags are set: pass tags=[...]")
    if ex.get("print_config"):
        from src.utils.rich_utils import print_config_tree

        print_config_tree(cfg, resolve=True, save_to_file=True)


def task_wrapper(task: Callable[[DictConfig], tuple[dict, dict]]) -> Callable:
    """Run a task so that a failure is logged with the run folder, and loggers are closed."""

    @wraps(task)
    def wrapped(cfg: DictConfig) -> tuple[dict, dict]:
        try:
            return task(cfg)
        except Exception:
            log.exception(f"Task failed; run folder: {cfg.paths.output_dir}")
            raise
        finally:
            log.info(f"Output dir: {cfg.paths.output_dir}")
            _close_wandb()

    return wrapped


def _close_wandb() -> None:
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run:
            wandb.finish()


def get_metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value of the metric to optimize (for sweeps); a missing name is an error, not None."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(
            f"optimized_metric '{name}' was not logged; logged metrics: {sorted(metrics)}"
        )
    value = metrics[name]
    return float(value.item() if hasattr(value, "item") else value)


def ensure_dataset(data_cfg: DictConfig) -> Path:
    """Make sure `data_cfg.data_dir` exists; generate it when the config says how.

    `data_cfg.generate` is a list of overrides for `configs/generate.yaml` (or null). The
    dataset is written exactly at `data_dir` and nothing existing is ever replaced.
    """
    data_dir = Path(data_cfg.data_dir)
    if data_dir.exists():
        return data_dir
    recipe = data_cfg.get("generate")
    if recipe is None:
        raise FileNotFoundError(
            f"dataset folder {data_dir} does not exist and data.generate does not say how to "
            f"make it; generate it first, e.g.\n  python generate_vimh.py dataset.out_dir="
            f"{data_dir.parent} dataset.name={data_dir.name} [synth=... dataset.size=...]"
        )
    from hydra import compose

    from src.synth.generate import generate_dataset

    overrides = [
        *list(recipe),
        f"dataset.out_dir={data_dir.parent}",
        f"dataset.name={data_dir.name}",
        "dataset.overwrite=false",
    ]
    log.info(
        f"Dataset {data_dir} not found: generating it (generate_vimh.py {' '.join(overrides)})"
    )
    return generate_dataset(compose(config_name="generate", overrides=overrides))


def build_datamodule(data_cfg: DictConfig):
    """Provide the dataset if needed, then build the datamodule (`generate` is not its argument)."""
    ensure_dataset(data_cfg)
    node = OmegaConf.to_container(data_cfg, resolve=True)
    node.pop("generate", None)
    return instantiate(node)
