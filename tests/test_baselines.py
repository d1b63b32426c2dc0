"""Baselines and the skill score on tiny datasets whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.vimh import ParamSpec
from src.metrics.baselines import nearest, score_baselines
from src.metrics.estimation import EstimationMetrics

SPECS = (ParamSpec("a", 0, 9, 1), ParamSpec("b", 0, 4, 1))


def drawn(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 1, 2, 10) uint8 images showing each record's classes (a 255 pixel per head in its
    row), over faint noise (0..30) that makes every record, train or test, a new one."""
    n = len(classes)
    images = rng.integers(0, 31, (n, 1, 2, 10)).astype(np.uint8)
    images[np.arange(n), 0, 0, classes[:, 0]] = 255
    images[np.arange(n), 0, 1, classes[:, 1]] = 255
    return images


def encoded(classes: np.ndarray) -> np.ndarray:
    return np.stack([s.class_code(classes[:, i]) for i, s in enumerate(SPECS)], 1).astype(np.uint8)


def known_splits(n_test: int = 20000, seed: int = 7):
    """Train: every class pair 20 times. Test: other records (their own noise), head `a`
    skewed to high classes (so its mean is not the train mean), and every fifth test record
    labelled one class of `a` above what its image shows. A baseline that learns from train
    reads the images: accuracy on `a` exactly 0.8, on `b` exactly 1; one that looks up the
    test labels or takes the test mean scores otherwise."""
    rng = np.random.default_rng(seed)
    pairs = np.stack(np.meshgrid(np.arange(10), np.arange(5), indexing="ij"), -1).reshape(-1, 2)
    train_classes = np.repeat(pairs, 20, axis=0)
    val_classes = pairs
    skewed = rng.choice(10, n_test, p=np.arange(1, 11) / 55)
    shown = np.stack([skewed, rng.integers(0, 5, n_test)], axis=1)
    labels = shown.copy()
    labels[::5, 0] = (shown[::5, 0] + 1) % 10
    return (
        (drawn(train_classes, rng), encoded(train_classes)),
        (drawn(val_classes, rng), encoded(val_classes)),
        (drawn(shown, rng), encoded(labels)),
    )


def test_baselines_learn_from_train_and_are_scored_on_test():
    train, val, test = known_splits()
    scores = score_baselines(SPECS, train, val, test)
    for name in ("nn_pixels", "linear_probe"):
        assert scores[name]["test/a/acc"] == pytest.approx(0.8, abs=1e-6), name
        assert scores[name]["test/b/acc"] == 1.0, name
    assert scores["nn_pixels"]["test/b/skill"] == pytest.approx(1.0)  # train values, exact
    # The train mean's skill is 0 by definition; the test mean's would not be (a is skewed).
    assert scores["train_mean"]["test/a/skill"] == pytest.approx(0.0, abs=1e-6)
    assert scores["train_mean"]["test/score"] == pytest.approx(0.0, abs=1e-6)
    test_mean = np.full(len(test[1]), SPECS[0].decode(test[1][:, 0]).mean())
    skill = EstimationMetrics([SPECS[0]], {"a": 4.5})  # the train mean of a
    skill.update(
        {"a": (torch.tensor(test_mean, dtype=torch.float32), torch.zeros(len(test_mean)))},
        {"a": (torch.tensor(SPECS[0].decode(test[1][:, 0])), torch.zeros(len(test_mean)))},
    )
    assert abs(skill.compute("test")["test/a/skill"].item()) > 0.1
    # A uniform guess over 10 and 5 classes, 20,000 records: standard errors 0.002, 0.003.
    assert scores["chance"]["test/a/acc"] == pytest.approx(0.1, abs=0.01)
    assert scores["chance"]["test/b/acc"] == pytest.approx(0.2, abs=0.015)
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
