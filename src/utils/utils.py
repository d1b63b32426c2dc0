"""Glue shared by the entry points: extras, the task wrapper, user errors, the returned metric."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from src.errors import ConfigError, user_error
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
        raise ConfigError("extras.enforce_tags is on but no tags are set: pass tags=[...]")
    if ex.get("print_config"):
        from src.utils.rich_utils import print_config_tree

        print_config_tree(cfg, resolve=True, save_to_file=True)


def task_wrapper(task: Callable[[DictConfig], tuple[dict, dict]]) -> Callable:
    """Run a task so that a failure is logged with the run folder, and loggers are closed.

    A user error (see src/errors.py) is logged as its message alone; anything else with its
    traceback.
    """

    @wraps(task)
    def wrapped(cfg: DictConfig, *args: Any, **kwargs: Any) -> tuple[dict, dict]:
        try:
            return task(cfg, *args, **kwargs)
        except Exception as e:
            err = user_error(e)
            if err is None:
                log.exception(f"Task failed; run folder: {cfg.paths.output_dir}")
            else:
                log.error(f"Task failed: {err}")
            raise
        finally:
            log.info(f"Output dir: {cfg.paths.output_dir}")
            _close_wandb()

    return wrapped


@contextmanager
def user_errors() -> Iterator[None]:
    """For entry points: a user error ends the program with its message and exit status 1.

    The message goes to stderr, without the traceback (Hydra's or instantiate's wrapping
    included); HYDRA_FULL_ERROR=1 re-raises it whole. Other exceptions pass unchanged.
    """
    try:
        yield
    except Exception as e:
        err = user_error(e)
        if err is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/] {escape(str(err))}\n"
            "[dim](set HYDRA_FULL_ERROR=1 for the traceback)[/]"
        )
        sys.exit(1)


def _close_wandb() -> None:
    if "wandb" in sys.modules:
        import wandb

        if wandb.run:
            wandb.finish()


def get_metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value of the metric to optimize (for sweeps); a missing name is an error, not None."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(
            f"optimized_metric '{name}' was not logged; logged metrics: {sorted(metrics)}"
        )
    value = metrics[name]
    return float(value.item() if hasattr(value, "item") else value)


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """A run's final metrics as a JSON object of floats (what sweep collectors read), written
    atomically."""
    values = {k: float(v.item() if hasattr(v, "item") else v) for k, v in sorted(metrics.items())}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(values, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)
