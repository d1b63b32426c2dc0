"""Rich console output for configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import rich
import rich.syntax
import rich.tree
from lightning_utilities.core.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf


@rank_zero_only
def print_config_tree(
    cfg: DictConfig,
    order: Sequence[str] = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras"),
    resolve: bool = False,
    save_to_file: bool = False,
) -> None:
    """Print the composed config as a tree (and save it to the run folder)."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    fields = [f for f in order if f in cfg] + [f for f in cfg if f not in order]
    for f in fields:
        branch = tree.add(f, style="dim", guide_style="dim")
        value = cfg[f]
        text = (
            OmegaConf.to_yaml(value, resolve=resolve)
            if isinstance(value, DictConfig)
            else str(value)
        )
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to_file:
        with open(Path(cfg.paths.output_dir, "config_tree.log"), "w") as file:
            rich.print(tree, file=file)
