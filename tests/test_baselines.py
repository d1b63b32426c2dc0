"""Baselines and the skill score on tiny datasets whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.vimh import ParamSpec
from src.metrics.baselines import nearest, score_baselines
from src.metrics.estimation import EstimationMetrics

SPECS = (ParamSpec("a", 0, 9, 1), ParamSpec("b", 0, 4, 1))


def known_splits(n: int = 300, seed: int = 7):
    """Each record's image shows its classes (a bright pixel per head); test = copies of train
    records, so a lookup of the training set is exact and the labels are linearly decodable."""
    rng = np.random.default_rng(seed)
    classes = np.stack([rng.integers(0, s.num_classes, n) for s in SPECS], axis=1)
    codes = np.stack([s.class_code(classes[:, i]) for i, s in enumerate(SPECS)], axis=1)
    images = np.zeros((n, 1, 2, 10), dtype=np.uint8)
    images[np.arange(n), 0, 0, classes[:, 0]] = 255
    images[np.arange(n), 0, 1, classes[:, 1]] = 255
    return images, codes.astype(np.uint8)


def test_baselines_on_a_dataset_with_known_answers():
    images, codes = known_splits()
    train, val = (images[:200], codes[:200]), (images[200:250], codes[200:250])
    test = (images[:100].copy(), codes[:100].copy())  # seen records: 1-NN must be exact
    scores = score_baselines(SPECS, train, val, test)
    for head in ("a", "b"):
        assert scores["nn_pixels"][f"test/{head}/acc"] == 1.0
        assert scores["nn_pixels"][f"test/{head}/skill"] == pytest.approx(1.0)
        assert scores["linear_probe"][f"test/{head}/acc"] == 1.0  # one pixel per class
        assert scores["train_mean"][f"test/{head}/skill"] == pytest.approx(0.0, abs=1e-6)
    assert scores["nn_pixels"]["test/score"] == pytest.approx(1.0)
    assert scores["train_mean"]["test/score"] == pytest.approx(0.0, abs=1e-6)
    # a uniform guess over 10 and 5 classes
    assert scores["chance"]["test/a/acc"] == pytest.approx(0.1, abs=0.07)
    assert scores["chance"]["test/b/acc"] == pytest.approx(0.2, abs=0.09)
    assert scores["chance"]["test/score"] < 0  # worse than guessing the mean


def test_nearest_is_chunked_argmin():
    g = torch.Generator().manual_seed(0)
    train, query = torch.rand(50, 7, generator=g), torch.rand(23, 7, generator=g)
    expected = torch.cdist(query, train).argmin(dim=1).numpy()
    np.testing.assert_array_equal(nearest(train, query, query_chunk=5, train_chunk=7), expected)


def test_skill_is_zero_for_the_mean_and_one_for_a_perfect_model():
    spec = ParamSpec("x", 0.0, 10.0, 1.0)
    true_values = torch.tensor([1.0, 4.0, 7.0, 8.0])
    true = {"x": (true_values, torch.tensor([1, 4, 7, 8]))}
    mean = 5.0
    for pred_values, expected in (
        (torch.full((4,), mean), 0.0),
        (true_values.clone(), 1.0),
        (true_values + 2.0, 1 - 2.0 / 2.5),  # |true - 5| averages 2.5
    ):
        metrics = EstimationMetrics([spec], {"x": mean})
        pred = {"x": (pred_values, spec_classes(spec, pred_values))}
        metrics.update(pred, true)
        out = metrics.compute("test")
        assert out["test/x/skill"].item() == pytest.approx(expected, abs=1e-6)
        assert out["test/score"].item() == pytest.approx(expected, abs=1e-6)


def spec_classes(spec: ParamSpec, values: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(spec.class_index(values.numpy()))
