"""Trivial predictors a model must beat: the train mean, and the nearest train image.

Both return per-head values in natural units for a set of query records, like a model's
decoded predictions, so every predictor goes through the same resynthesis and metrics.
"""

from __future__ import annotations

import numpy as np
import torch

from src.data.vimh import VIMHSplit


def train_mean_values(train: VIMHSplit, n: int) -> dict[str, np.ndarray]:
    """Each head's mean train value, for n records (a constant guess in natural units)."""
    mean = train.values().mean(axis=0)
    return {p.name: np.full(n, mean[i]) for i, p in enumerate(train.info.params)}


def nearest_train_records(
    train_images: np.ndarray,
    query_images: np.ndarray,
    query_chunk: int = 1024,
    train_chunk: int = 16384,
) -> np.ndarray:
    """(Nq,) index of each query image's nearest train image (Euclidean on raw pixels).

    Chunked over both sets with `torch.cdist`, so memory stays bounded for any train size;
    ties go to the lower train index.
    """
    n_train = len(train_images)
    queries = torch.from_numpy(np.array(query_images)).flatten(1).float()
    best_d = torch.full((len(queries),), float("inf"))
    best_i = torch.zeros(len(queries), dtype=torch.int64)
    for t0 in range(0, n_train, train_chunk):
        part = np.array(train_images[t0 : t0 + train_chunk])
        train = torch.from_numpy(part).flatten(1).float()
        for q0 in range(0, len(queries), query_chunk):
            d = torch.cdist(queries[q0 : q0 + query_chunk], train)
            d, i = d.min(dim=1)
            better = d < best_d[q0 : q0 + query_chunk]
            best_d[q0 : q0 + query_chunk] = torch.where(better, d, best_d[q0 : q0 + query_chunk])
            best_i[q0 : q0 + query_chunk] = torch.where(
                better, i + t0, best_i[q0 : q0 + query_chunk]
            )
    return best_i.numpy()


def nearest_neighbour_values(train: VIMHSplit, query_images: np.ndarray) -> dict[str, np.ndarray]:
    """Each head's value of the nearest train record (1-NN on pixels)."""
    idx = nearest_train_records(train.images, query_images)
    values = train.values()[idx]
    return {p.name: values[:, i] for i, p in enumerate(train.info.params)}
