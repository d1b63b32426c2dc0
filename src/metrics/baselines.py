"""Reference predictors every results table shows beside the models.

- `chance`: a uniformly random class per head (seeded), valued at the class's grid value.
- `train_mean`: the training mean of each head, or of a nominal head its most frequent class
  (its skill is 0 by definition).
- `nn_pixels`: the label of the nearest training record in raw pixel space (1-NN, Euclidean,
  chunked `torch.cdist`): what a lookup table of the training set achieves.
- `linear_probe`: ridge regression from standardised pixels to one-hot classes per head,
  closed form, the ridge strength chosen on the validation split.
- `oracle_class`: each record's true class at its grid value: the best any predictor of
  class grid values can do (a perfect classifier), so the ceiling of grid-valued heads, and
  what continuous estimates must beat to show they leave the grid.

They are scored by the same `EstimationMetrics` as the models, so numbers are comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from src.data.vimh.format import ParamSpec
from src.metrics.estimation import EstimationMetrics, Predictions, reference_value

BASELINES = ("chance", "train_mean", "nn_pixels", "linear_probe", "oracle_class")
RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # times the mean diagonal of X^T X / N


def flat_pixels(images: np.ndarray) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C*H*W) float32."""
    return torch.from_numpy(np.ascontiguousarray(images).reshape(len(images), -1)).float()


def nearest(
    train_images, query_images, query_chunk: int = 1024, train_chunk: int = 16384
) -> np.ndarray:
    """(Nq,) index of each query record's nearest train record (Euclidean on raw pixels, any
    (N, ...) arrays or tensors). Chunked over both sets with `torch.cdist`, so memory stays
    bounded for any train size; ties go to the lower train index."""
    queries = torch.as_tensor(np.asarray(query_images)).flatten(1).float()
    best_d = torch.full((len(queries),), float("inf"))
    best_i = torch.zeros(len(queries), dtype=torch.int64)
    for t0 in range(0, len(train_images), train_chunk):
        train = torch.as_tensor(np.asarray(train_images[t0 : t0 + train_chunk]))
        train = train.flatten(1).float()
        for q0 in range(0, len(queries), query_chunk):
            q = slice(q0, q0 + query_chunk)
            d, i = torch.cdist(queries[q], train).min(dim=1)
            better = d < best_d[q]
            best_d[q] = torch.where(better, d, best_d[q])
            best_i[q] = torch.where(better, i + t0, best_i[q])
    return best_i.numpy()


def as_predictions(specs: Sequence[ParamSpec], values: np.ndarray) -> Predictions:
    """(N, P) natural values -> {head: (values, classes)} as float32/int64 tensors."""
    return {
        s.name: (
            torch.from_numpy(values[:, i].astype(np.float32)),
            torch.from_numpy(s.class_index(values[:, i])),
        )
        for i, s in enumerate(specs)
    }


def class_values(specs: Sequence[ParamSpec], classes: np.ndarray) -> np.ndarray:
    return np.stack([s.class_value(classes[:, i]) for i, s in enumerate(specs)], axis=1)


def ridge_probe(
    x_train: torch.Tensor,
    classes: np.ndarray,
    specs: Sequence[ParamSpec],
    x_val: torch.Tensor,
    val_classes: np.ndarray,
    x_test: torch.Tensor,
) -> np.ndarray:
    """(M, P) test classes from a ridge regression of one-hot classes on standardised pixels;
    the strength maximising the mean validation accuracy wins."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)

    def design(x: torch.Tensor) -> torch.Tensor:
        z = ((x - mean) / std).double()
        return torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)

    a = design(x_train)
    onehot = torch.cat(
        [
            torch.nn.functional.one_hot(torch.from_numpy(classes[:, i]), s.num_classes)
            for i, s in enumerate(specs)
        ],
        dim=1,
    ).double()
    gram, rhs = a.T @ a, a.T @ onehot
    scale = gram.diagonal().mean().item()
    eye = torch.eye(len(gram), dtype=gram.dtype)
    bounds = np.cumsum([0] + [s.num_classes for s in specs])

    def predict(w: torch.Tensor, x: torch.Tensor) -> np.ndarray:
        scores = design(x) @ w
        return np.stack(
            [scores[:, bounds[i] : bounds[i + 1]].argmax(1).numpy() for i in range(len(specs))],
            axis=1,
        )

    best, best_acc = None, -1.0
    for lam in RIDGE_GRID:
        w = torch.linalg.solve(gram + lam * scale * eye, rhs)
        acc = float((predict(w, x_val) == val_classes).mean())
        if acc > best_acc:
            best, best_acc = w, acc
    return predict(best, x_test)


def baseline_predictions(
    specs: Sequence[ParamSpec],
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    seed: int = 0,
) -> dict[str, Predictions]:
    """Each baseline's test predictions. `train`, `val`, `test` are (images uint8 (N, C, H, W),
    codes uint8 (N, P)) of the splits."""
    decoded = {
        split: np.stack([s.decode(codes[:, i]) for i, s in enumerate(specs)], axis=1)
        for split, (_, codes) in (("train", train), ("val", val), ("test", test))
    }
    classes = {
        split: np.stack([s.class_index(v[:, i]) for i, s in enumerate(specs)], axis=1)
        for split, v in decoded.items()
    }
    n_test = len(test[1])
    rng = np.random.default_rng(seed)
    chance = np.stack([rng.integers(0, s.num_classes, n_test) for s in specs], axis=1)
    means = np.array([reference_value(s, train[1][:, i]) for i, s in enumerate(specs)])
    x_train, x_val, x_test = flat_pixels(train[0]), flat_pixels(val[0]), flat_pixels(test[0])
    nn = nearest(train[0], test[0])
    probe = ridge_probe(x_train, classes["train"], specs, x_val, classes["val"], x_test)
    return {
        "chance": as_predictions(specs, class_values(specs, chance)),
        "train_mean": as_predictions(specs, np.repeat(means[None, :], n_test, axis=0)),
        "nn_pixels": as_predictions(specs, decoded["train"][nn]),
        "linear_probe": as_predictions(specs, class_values(specs, probe)),
        "oracle_class": as_predictions(specs, class_values(specs, classes["test"])),
    }


def score_baselines(
    specs: Sequence[ParamSpec],
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    stage: str = "test",
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{baseline: {metric key: value}} on the test split, scored like the models."""
    means = {s.name: reference_value(s, train[1][:, i]) for i, s in enumerate(specs)}
    true = as_predictions(
        specs, np.stack([s.decode(test[1][:, i]) for i, s in enumerate(specs)], axis=1)
    )
    out = {}
    for name, pred in baseline_predictions(specs, train, val, test, seed).items():
        metrics = EstimationMetrics(specs, means)
        metrics.update(pred, true)
        out[name] = {k: float(v) for k, v in metrics.compute(stage).items()}
    return out


def datamodule_splits(datamodule) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (uint8 images, codes)} of a VIMHDataModule (its pixels, whatever it serves)."""
    from src.data.datamodule import VIMHDataModule

    dm = datamodule
    if dm.representation != "image":  # pixel baselines read the same dataset's images
        dm = VIMHDataModule(dm.data_dir, val_fraction=dm.val_fraction, split_seed=dm.split_seed)
    splits = {}
    for split in ("train", "val", "test"):
        images, codes = dm.tensors(split)
        splits[split] = (images.numpy(), codes.numpy())
    return splits


def datamodule_baseline_values(datamodule, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """{baseline: {head: (N,) test values in natural units}}, for resynthesis."""
    splits = datamodule_splits(datamodule)
    preds = baseline_predictions(
        datamodule.heads, splits["train"], splits["val"], splits["test"], seed
    )
    return {
        name: {h: v.double().numpy() for h, (v, _) in pred.items()} for name, pred in preds.items()
    }


def datamodule_baselines(datamodule, seed: int = 0) -> dict[str, dict[str, float]]:
    """`score_baselines` on a VIMHDataModule's splits (its pixels, whatever it serves)."""
    splits = datamodule_splits(datamodule)
    return score_baselines(
        datamodule.heads, splits["train"], splits["val"], splits["test"], seed=seed
    )
