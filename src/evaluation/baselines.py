"""Trivial predictors a model must beat: the train mean, and the nearest train image.

Both return per-head values in natural units for a set of query records, like a model's
decoded predictions, so every predictor goes through the same resynthesis and metrics.
"""

from __future__ import annotations

import numpy as np

from src.data.vimh import VIMHSplit
from src.metrics.baselines import nearest


def train_mean_values(train: VIMHSplit, n: int) -> dict[str, np.ndarray]:
    """Each head's mean train value, for n records (a constant guess in natural units)."""
    mean = train.values().mean(axis=0)
    return {p.name: np.full(n, mean[i]) for i, p in enumerate(train.info.params)}


def nearest_neighbour_values(train: VIMHSplit, query_images: np.ndarray) -> dict[str, np.ndarray]:
    """Each head's value of the nearest train record (1-NN on pixels)."""
    idx = nearest(train.images, query_images)
    values = train.values()[idx]
    return {p.name: values[:, i] for i, p in enumerate(train.info.params)}
