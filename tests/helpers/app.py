"""A tiny trained estimation checkpoint and the app's config, shared by the page's tests."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.runs import on, train_saw_checkpoint


def train_tiny_saw(root: Path) -> tuple[Path, Path]:
    """(dataset folder, best checkpoint) of cnn_12k trained 3 epochs on 300 easy saw notes
    (seconds on one core)."""
    return train_saw_checkpoint(root, size=300, epochs=3, dataset_batch=64)


def app_overrides(folder: Path, ckpt: Path | None, *more: str) -> list[str]:
    """Overrides of configs/app.yaml: the page on `ckpt` and its dataset, not served."""
    return [*on(folder), *([f"ckpt_path={ckpt}"] if ckpt else []), "launch=false", *more]
