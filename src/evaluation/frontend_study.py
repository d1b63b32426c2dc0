"""The front-end study's analysis (scripts/frontend_study.py runs the grid and writes the doc).

Runs are grouped over seeds by their configuration (task, back-end, front-end setting, n_mels,
filterbank init, mask-out band). A trainable setting is compared with the fixed front-end two
ways: with the same back-end (the gain the seed paper reports), and at matched total trainable
parameters (a fixed front-end whose back-end had about as many parameters to spend). The two
claims are then decided by the rules in `verdict`, from the numbers it returns: a back-end's
size is its total trainable parameters with the fixed front-end (back-end, heads and input
norm: what it can fit), and its front-end setting is chosen on the validation score, the test
score only measuring the chosen one.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

SETTINGS = {  # name: (trainable_stft, trainable_mel)
    "fixed": (False, False),
    "mel": (False, True),
    "stft": (True, False),
    "both": (True, True),
}
TRAINABLE = ("mel", "stft", "both")
SCORE = "test/score"
# The tested checkpoint's validation score (the best epoch's; `collect` in
# scripts/frontend_study.py reads it from each run's log): what choosing among settings may use.
VAL_SCORE = "val/score_best"
TRAINABLE_PARAMS = "frontend/params/trainable"
BACKEND_PARAMS = "frontend/params/backend"
# |mean difference| / its standard error counted as more than seed noise: with 3 seeds a side
# (about 4 degrees of freedom) t = 3 is p ~ 0.04, two-sided.
T_SIGNIFICANT = 3.0


@dataclass(frozen=True, order=True)
class Config:
    """One cell of the study: everything but the seed."""

    task: str
    backend: str
    setting: str
    n_mels: int = 40
    mel_init: str = "mel"
    mask: str = "none"  # "none" or "start-end" (STFT bins)
    lr: float = 0.003  # the front-end's learning rate (moot when it is fixed: stored as 0.003)

    def __post_init__(self) -> None:
        if self.setting == "fixed":  # nothing to learn: every fixed run is the same cell
            object.__setattr__(self, "lr", Config.lr)

    def with_setting(self, setting: str) -> Config:
        return replace(self, setting=setting)


@dataclass
class Run:
    config: Config
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    output_dir: str = ""


def group(runs: Iterable[Run]) -> dict[Config, list[Run]]:
    """Runs by configuration (seeds sorted); runs without a test score are left out."""
    out: dict[Config, list[Run]] = defaultdict(list)
    for r in runs:
        if math.isfinite(r.metrics.get(SCORE, math.nan)):
            out[r.config].append(r)
    return {k: sorted(v, key=lambda r: r.seed) for k, v in sorted(out.items())}


def values(runs: Sequence[Run], metric: str) -> list[float]:
    return [float(r.metrics[metric]) for r in runs if metric in r.metrics]


def mean(runs: Sequence[Run], metric: str) -> float:
    v = values(runs, metric)
    return statistics.fmean(v) if v else math.nan


@dataclass(frozen=True)
class Gain:
    """mean(a) - mean(b) of a metric, its standard error (Welch) and t = gain / se."""

    config: Config
    reference: Config
    gain: float
    se: float
    n: tuple[int, int]

    @property
    def t(self) -> float:
        if math.isnan(self.se):
            return math.nan
        if self.se > 0:
            return self.gain / self.se
        return math.copysign(math.inf, self.gain) if self.gain else 0.0

    @property
    def significant(self) -> bool:
        return abs(self.t) >= T_SIGNIFICANT


def gain(groups: Mapping[Config, list[Run]], a: Config, b: Config, metric: str = SCORE) -> Gain:
    va, vb = values(groups[a], metric), values(groups[b], metric)
    diff = statistics.fmean(va) - statistics.fmean(vb)
    if min(len(va), len(vb)) < 2:  # one seed has no spread: no error, never significant
        return Gain(a, b, diff, math.nan, (len(va), len(vb)))
    var = sum(statistics.variance(v) / len(v) for v in (va, vb))
    return Gain(a, b, diff, math.sqrt(var), (len(va), len(vb)))


def gains_over_fixed(groups: Mapping[Config, list[Run]], metric: str = SCORE) -> list[Gain]:
    """Each trainable configuration against the fixed front-end with everything else equal."""
    out = []
    for cfg in groups:
        ref = cfg.with_setting("fixed")
        if cfg.setting in TRAINABLE and ref in groups:
            out.append(gain(groups, cfg, ref, metric))
    return out


def trainable_params(groups: Mapping[Config, list[Run]], cfg: Config) -> float:
    return mean(groups[cfg], TRAINABLE_PARAMS)


def match_by_params(
    targets: Mapping, candidates: Mapping, tolerance: float = 1.5
) -> dict[object, object | None]:
    """For each target (key -> parameter count), the candidate whose count is nearest on a log
    scale, if within a factor `tolerance`; else None. Ties go to the larger candidate (the
    harder comparison for the target)."""
    if tolerance < 1.0:
        raise ValueError(f"tolerance is a factor >= 1, got {tolerance}")
    out: dict[object, object | None] = {}
    for key, count in targets.items():
        best, best_d = None, math.inf
        for cand, c in candidates.items():
            if not (count > 0 and c > 0):
                continue
            d = abs(math.log(c / count))
            if d < best_d - 1e-12 or (abs(d - best_d) <= 1e-12 and c > candidates[best]):
                best, best_d = cand, d
        out[key] = best if best is not None and best_d <= math.log(tolerance) + 1e-12 else None
    return out


@dataclass(frozen=True)
class Matched:
    """A trainable configuration, its trainable parameter count, and the fixed-front-end
    configuration matched to it (None if none is within the tolerance) with its count and the
    gain over it."""

    config: Config
    count: float
    match: Config | None = None
    match_count: float = math.nan
    gain: Gain | None = None


def matched_gains(
    groups: Mapping[Config, list[Run]], tolerance: float = 1.5, metric: str = SCORE
) -> dict[Config, Matched]:
    """Each trainable configuration against the fixed-front-end configuration (any back-end; the
    same task, n_mels, init and mask) with the nearest total trainable parameter count within
    a factor `tolerance`."""
    out: dict[Config, Matched] = {}
    for cfg in groups:
        if cfg.setting not in TRAINABLE:
            continue
        fixed = cfg.with_setting("fixed")
        pool = {
            c: trainable_params(groups, c)
            for c in groups
            if c.setting == "fixed" and replace(c, backend=fixed.backend) == fixed
        }
        count = trainable_params(groups, cfg)
        match = match_by_params({cfg: count}, pool, tolerance)[cfg]
        if match is None:
            out[cfg] = Matched(cfg, count)
        else:
            out[cfg] = Matched(cfg, count, match, pool[match], gain(groups, cfg, match, metric))
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan for fewer than 2 points."""
    if len(x) < 2:
        return math.nan

    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den else math.nan


@dataclass
class Verdict:
    """The decision on one task, with the numbers behind it."""

    task: str
    best: dict[str, Gain]  # back-end -> the test gain over fixed of its val-chosen setting
    sizes: dict[str, float]  # back-end -> total trainable parameters, fixed front-end
    small: list[str]  # the back-ends claim 1 is about
    pairs: list[tuple[str, str, float, float]]  # (smaller, larger, gain difference, its se)
    rho: float  # Spearman(back-end size, best gain)
    claim1: str  # "holds" | "partly" | "does not hold"
    claim2: str  # "holds" | "does not hold" | "inconclusive"
    chosen_on: dict[str, str] = field(default_factory=dict)  # back-end -> "validation" | "test"


def choose_setting(groups: Mapping[Config, list[Run]], gains: list[Gain]) -> tuple[Gain, str]:
    """Of one back-end's trainable settings (their test gains over fixed), the one whose
    validation gain is largest, and "validation"; "test" if some run has no validation score
    (then the largest test gain, as a last resort the report names)."""
    by_val = []
    for g in gains:
        if not all(values(groups[c], VAL_SCORE) for c in (g.config, g.reference)):
            return max(gains, key=lambda x: x.gain), "test"
        by_val.append((gain(groups, g.config, g.reference, VAL_SCORE).gain, g))
    return max(by_val, key=lambda vg: vg[0])[1], "validation"


def verdict(
    groups: Mapping[Config, list[Run]],
    task: str,
    families: Mapping[str, str],
    base: Config | None = None,
) -> Verdict:
    """Decide the two claims on `task` at `base`'s n_mels, init, mask and front-end lr (default:
    `Config`'s defaults).

    Each back-end's size is its total trainable parameters with the fixed front-end, and its
    gain is the test gain of the trainable setting chosen on validation (`choose_setting`).
    Claim 1 (a gain for small back-ends): the small back-ends are the smaller half by size
    (at least one); a back-end gains when its gain is >= T_SIGNIFICANT standard errors. Holds
    if every small back-end gains, partly if some do. Claim 2 (the gain shrinks with
    capacity), from each family's smaller back-end's gain minus its larger one's: does not hold
    if no back-end gains (there is no gain to shrink) or a difference is negative by >=
    T_SIGNIFICANT standard errors (the larger back-end gains more); holds if every difference
    is positive, one by >= T_SIGNIFICANT standard errors, and the rank correlation of size with
    gain over all back-ends is negative; else inconclusive.
    """
    base = base or Config(task, "", "fixed")
    per_backend: dict[str, list[Gain]] = defaultdict(list)
    sizes: dict[str, float] = {}
    key = (task, base.n_mels, base.mel_init, base.mask, base.lr)
    for g in gains_over_fixed(groups):
        c = g.config
        if (c.task, c.n_mels, c.mel_init, c.mask, c.lr) != key:
            continue
        per_backend[c.backend].append(g)
        sizes[c.backend] = mean(groups[g.reference], TRAINABLE_PARAMS)
    best: dict[str, Gain] = {}
    chosen_on: dict[str, str] = {}
    for b, gains in per_backend.items():
        best[b], chosen_on[b] = choose_setting(groups, gains)
    ordered = sorted(best, key=lambda b: sizes[b])
    small = ordered[: max(1, len(ordered) // 2)] if ordered else []
    by_family: dict[str, list[str]] = defaultdict(list)
    for b in ordered:
        by_family[families.get(b, b)].append(b)
    gaining = [b for b in small if best[b].gain > 0 and best[b].significant]
    claim1 = (
        "holds"
        if small and len(gaining) == len(small)
        else ("partly" if gaining else "does not hold")
    )
    pairs = []
    for members in by_family.values():
        for lo, hi in itertools.pairwise(members):
            d = best[lo].gain - best[hi].gain
            pairs.append((lo, hi, d, math.hypot(best[lo].se, best[hi].se)))
    order = list(best)
    rho = spearman([sizes[b] for b in order], [best[b].gain for b in order])
    gaining_any = any(g.gain > 0 and g.significant for g in best.values())
    against = any(se > 0 and d / se <= -T_SIGNIFICANT for _, _, d, se in pairs)
    ok = (
        pairs
        and all(d > 0 for _, _, d, _ in pairs)
        and any(se == 0 or d / se >= T_SIGNIFICANT for _, _, d, se in pairs)
        and rho < 0
    )
    if not gaining_any or against:
        claim2 = "does not hold"
    else:
        claim2 = "holds" if ok else "inconclusive"
    return Verdict(task, best, sizes, small, pairs, rho, claim1, claim2, chosen_on)
