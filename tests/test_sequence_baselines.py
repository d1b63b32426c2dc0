"""The sequence task's fitted baselines (src/evaluation/sequence_baselines.py) on frames whose
answer is known."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from src.data.frames import FrameWindows, SplitFrames, held
from src.evaluation.sequence_baselines import sequence_baselines
from src.metrics import metric_key


class RollingFrames(FrameWindows):
    """Records whose every frame is the one before it rolled up one bin: the next frame is a
    fixed linear (permutation) function of the last, in any per-bin domain."""

    def __init__(self, records: dict[str, int], height: int = 8, width: int = 24, seed: int = 0):
        super().__init__(context=4, horizon=3, stride=2, batch_size=16)
        self.frames = {
            "height": height,
            "scale": "mel",
            "f_min": 40.0,
            "f_max": 4000.0,
            "db_min": -80.0,
            "db_max": 0.0,
        }
        self.n_frames = width
        rng = np.random.default_rng(seed)
        for split, n in records.items():
            first = rng.integers(0, 256, (n, 1, height), dtype=np.uint8)
            shifts = (np.arange(height)[None, :] - np.arange(width)[:, None]) % height
            frames = np.ascontiguousarray(first[:, 0][:, shifts])  # (n, W, H)
            codes = np.zeros((n, 0), np.uint8)
            self.splits[split] = SplitFrames(partial(held, frames), True, None, codes, n)

    def open_splits(self) -> None:
        pass


def test_linear_ar_learns_a_linear_frame_process_and_rolls_it_out():
    dm = RollingFrames({"train": 40, "val": 8, "test": 8})
    out = sequence_baselines(dm)
    m = out["metrics"]
    repeat = m[metric_key("test", "mse", "repeat_last")]
    assert repeat > 1e-3  # the frames do change
    assert m[metric_key("test", "mse", "linear_ar")] < 1e-6 * repeat
    assert m[metric_key("test", "rollout_mse", "linear_ar")] < 1e-6 * repeat
    # The domain and ridge were picked on validation: the smallest ridge fits best here.
    chosen = out["linear_ar"]
    assert chosen["ridge"] == 1e-6 and chosen["domain"] in ("power", "log_mel")
    best = min(chosen["validation_mse"].values())
    assert chosen["validation_mse"][f"{chosen['domain']}, ridge 1e-06"] == best
    assert set(out["curves"]) == {"repeat_last", "mean_frame", "linear_ar"}
    assert len(out["curves"]["linear_ar"]["mse"]) == 3


def test_mean_frame_is_the_best_constant_on_linear_power():
    """No other constant frame does better on the training frames' linear power MSE."""
    dm = RollingFrames({"train": 40, "val": 8, "test": 8})
    unit = dm.records("train", np.arange(40)).double() / 255
    power = 10 ** (-8 + 8 * unit)  # dB over [-80, 0]
    mean = 10 ** (-8 + 8 * torch.tensor(dm.frame_mean(), dtype=torch.float64))

    def mse(frame: torch.Tensor) -> float:
        return float((power - frame).square().mean())

    assert mse(mean) == pytest.approx(float(power.var(dim=(0, 1), unbiased=False).mean()))
    for other in (mean * 1.01, mean * 0.99, 10 ** (-8 + 8 * unit.mean(dim=(0, 1)))):
        assert mse(other) > mse(mean)


def test_results_script_decides_beats_per_model_by_three_standard_errors(monkeypatch):
    """scripts/sequence_results.py's tables from fake run records: the baselines come from
    the baselines dict, and a model beats one only by >= 3 standard errors of its mean."""
    from src.paths import PROJECT_ROOT
    from tests.test_scripts import load_script

    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "scripts"))
    script = load_script("sequence_results")
    base = {
        metric_key("test", prefix + e, p): v
        for p, v in (("repeat_last", 2e-7), ("mean_frame", 11.382e-7), ("linear_ar", 1.8e-7))
        for prefix in ("", "rollout_")
        for e in ("mse", "mse_db", "centroid_err", "bandwidth_err", "flatness_err", "entropy_err")
    }

    def run(step: float, roll: float) -> dict:
        m = {metric_key("test", p + e): 1.0 for p in ("", "rollout_") for e in script.ERRORS}
        m["test/mse"], m["test/rollout_mse"] = step, roll
        return {"metrics": m, "model": "seq_x", "params": 10}

    results = {
        # rollout 11.106 ± 1.804 (1e-7) against the mean frame's 11.382: within noise
        "seq_a": [run(1.70e-7, r * 1e-7) for r in (9.3, 11.106, 12.912)],
        "seq_b": [run(s * 1e-7, 9.0e-7) for s in (1.69, 1.70, 1.71)],
    }
    cols, rows = script.claims_rows(results, base)
    a, b = (dict(zip(cols[1:], r[1:], strict=True)) for r in rows)
    assert a["rollout vs mean-frame"].startswith("no (within noise): +0.28, t = 0.3")
    assert b["rollout vs mean-frame"].startswith("yes: +2.38")
    assert b["one step vs linear AR"].startswith("yes: +0.10")
    assert script.verdict([3e-7, 3.1e-7, 2.9e-7], 2e-7).startswith("no (worse): -1.00")
    cols, rows = script.rows_for(results, base, "")
    assert [r[0] for r in rows[:3]] == ["repeat-last", "mean-frame", "linear AR"]
    assert rows[2][2] == "1.800" and rows[0][-1] == "0.000"  # MSE in 1e-7; score 0
    assert rows[3][-1] == "0.150 ± 0.000"  # 1 - 1.7 / 2, every seed
