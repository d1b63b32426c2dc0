"""Which split each recording goes to.

In order of precedence: the collection's own splits (split lists or a split column), else a
seeded split stratified by class: per class when files have no groups, or whole groups (e.g.
speakers) assigned greedily so that each split's class counts come close to their targets and
no group spans two splits. Files of a split are then put in a seeded random order, so that no
stretch of a split file holds one class (streaming reads whole runs of records).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from src.data.vimh.format import SPLITS
from src.errors import ConfigError, DataError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    f = {k: float(v) for k, v in fractions.items()}
    unknown = set(f) - set(SPLITS)
    if unknown or "train" not in f or "test" not in f:
        raise ConfigError(f"dataset.splits must give train and test (and val) fractions, got {f}")
    if any(v < 0 for v in f.values()) or not math.isclose(sum(f.values()), 1.0, abs_tol=1e-6):
        raise ConfigError(f"dataset.splits fractions must be >= 0 and add up to 1, got {f}")
    if f["train"] <= 0 or f["test"] <= 0:
        raise ConfigError("dataset.splits: train and test need a fraction above 0")
    return {s: f.get(s, 0.0) for s in SPLITS}


def stratified(strata: np.ndarray, fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """(N,) split names: each stratum cut by the fractions (cumulative rounding), seeded."""
    f = check_fractions(fractions)
    bounds = np.cumsum([f[s] for s in SPLITS])
    rng = np.random.default_rng(seed)
    out = np.empty(len(strata), dtype=object)
    for value in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == value))
        cuts = np.rint(bounds * len(idx)).astype(int)
        for s, lo, hi in zip(SPLITS, (0, *cuts[:-1]), cuts, strict=True):
            out[idx[lo:hi]] = s
    return out


def grouped(
    strata: np.ndarray, groups: np.ndarray, fractions: Mapping[str, float], seed: int
) -> np.ndarray:
    """(N,) split names with every group in one split, class counts close to the targets.

    Groups are taken largest first (ties in a seeded random order); each goes to the split
    (among those with a fraction above 0) where adding it lowers the squared distance of the
    split's class counts to `fraction * class total` the most, except that the last groups go
    to splits still empty, so that every split gets a group."""
    f = check_fractions(fractions)
    splits = [s for s in SPLITS if f[s] > 0]
    _, cls = np.unique(strata, return_inverse=True)
    names, grp = np.unique(groups.astype(str), return_inverse=True)
    if len(names) < len(splits):
        raise DataError(
            f"{len(names)} group(s) cannot fill {len(splits)} splits {splits} without a group "
            f"spanning two of them; give more groups, or no group column"
        )
    n_cls = cls.max() + 1
    counts = np.zeros((len(names), n_cls))
    np.add.at(counts, (grp, cls), 1)
    target = np.array([f[s] for s in splits])[:, None] * counts.sum(axis=0)[None, :]
    have = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    where = np.empty(len(names), dtype=int)
    for left, g in enumerate(order):
        c = counts[g]
        gain = (c * (2 * (have - target) + c)).sum(axis=1)
        empty = np.flatnonzero(have.sum(axis=1) == 0)
        if len(empty) >= len(order) - left:  # the last groups go where none is yet
            gain = np.where(np.isin(np.arange(len(splits)), empty), gain, np.inf)
        s = int(np.argmin(gain))
        where[g] = s
        have[s] += c
    out = np.asarray(splits, dtype=object)[where[grp]]
    return out


def groups_across(split: np.ndarray, groups: np.ndarray | None) -> list[str]:
    """Groups whose files lie in more than one split (given splits may have such leaks)."""
    if groups is None:
        return []
    seen: dict[str, str] = {}
    leaks = set()
    for g, s in zip(groups.astype(str), split, strict=True):
        if seen.setdefault(g, s) != s:
            leaks.add(g)
    return sorted(leaks)


def assign(
    strata: np.ndarray,
    groups: np.ndarray | None,
    given: np.ndarray | None,
    fractions: Mapping[str, float],
    seed: int,
) -> tuple[np.ndarray, str]:
    """(N,) split names and how they were chosen."""
    if given is not None:
        split = np.where(given == "", "train", given).astype(object)
        how = "given by the collection"
    elif groups is not None:
        split = grouped(strata, groups, fractions, seed)
        how = f"seeded, stratified by class, whole groups ({len(set(groups))} groups)"
    else:
        split = stratified(strata, fractions, seed)
        how = "seeded, stratified by class"
    for s in ("train", "test"):
        if not (split == s).any():
            raise DataError(f"the {s} split gets no files ({how}); a dataset needs train and test")
    return split, how


def record_order(split: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """{split: file indices in a seeded random order} for the splits that have files."""
    rng = np.random.default_rng([seed, 1])
    return {s: rng.permutation(np.flatnonzero(split == s)) for s in SPLITS if (split == s).any()}
