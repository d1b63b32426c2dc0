"""Where the project lives, for configs and the `paths` config group.

The package is installed in editable mode (`setup.sh`), so `import src` works from any working
directory and `src/`'s location is the one fact every path derives from. Configs refer to the
root as `${nsm_root:}`; the resolver is registered when `src` is imported.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"


def register_resolvers() -> None:
    """`${nsm_root:}` -> the repository root, and the run-folder resolvers (idempotent)."""
    from src.utils.runs import register_run_resolvers

    if not OmegaConf.has_resolver("nsm_root"):
        OmegaConf.register_new_resolver("nsm_root", lambda: str(PROJECT_ROOT))
    register_run_resolvers()
