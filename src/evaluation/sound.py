"""Judge estimates by the sound: the audio distances of a trained model's test predictions and
of every reference predictor, rendered with the dataset's synth, as plain numbers for tables.

Each predictor's values for the test split are rendered with the dataset's own synth and the
true nuisance of each record (`src/evaluation/resynthesis.py`), then compared with the test
notes by `src.metrics.audio.SOUND_METRICS`; a table cell is the mean or the median over the
test records. Used by scripts/compare_models.py (docs/models.md) and scripts/report_run.py
(docs/results.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from src.evaluation.resynthesis import error_key, evaluate_resynthesis
from src.metrics.audio import SOUND_METRICS
from src.metrics.baselines import datamodule_baseline_values

STATS = ("mean", "median")


@torch.no_grad()
def test_values(module, datamodule) -> dict[str, np.ndarray]:
    """{head: (N,) decoded test predictions in natural units}, the split in file order."""
    was_training = module.training
    module.eval()
    out: dict[str, list[torch.Tensor]] = {}
    try:
        for batch in datamodule.test_dataloader():
            batch = (batch[0].to(module.device), batch[1])
            x = datamodule.on_after_batch_transfer(batch, 0)[0]  # uint8 -> normalised
            for name, v in module.predict_values(x).items():
                out.setdefault(name, []).append(v.detach().cpu().double())
    finally:
        module.train(was_training)
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def sound_summary(
    datamodule, predictors: Mapping[str, Mapping[str, np.ndarray]]
) -> dict[str, dict[str, float]]:
    """{predictor: {"<metric>/<mean|median>": value, "abs_err_<head>/mean": ...}} on the
    datamodule's test split (every record)."""
    split = datamodule.files["test"]
    result = evaluate_resynthesis(datamodule.dataset, predictors, split=split, n_listen=0)
    summary = result.summary()
    columns = [*SOUND_METRICS, *(error_key(p.name) for p in result.params)]
    return {
        name: {f"{c}/{s}": summary[name][c][s] for c in columns for s in STATS}
        for name in predictors
    }


def baseline_sound(datamodule, seed: int = 0) -> dict[str, dict[str, float]]:
    """`sound_summary` of every reference predictor (chance, train mean, 1-NN on pixels, ridge
    probe, oracle_class)."""
    return sound_summary(datamodule, datamodule_baseline_values(datamodule, seed))


def model_sound(module, datamodule) -> dict[str, float]:
    """`sound_summary` of a trained module's test predictions."""
    return sound_summary(datamodule, {"model": test_values(module, datamodule)})["model"]


def split_targets(dataset, split: str, n: int, renderer) -> torch.Tensor:
    """(n, T) target notes of a split: the stored waveforms, or the true values rendered."""
    if dataset.audio_available:
        return torch.from_numpy(np.array(dataset.audio(split)[:n]))
    true = dataset[split].values()[:n]
    return renderer.render_records(
        split, {p.name: true[:, i] for i, p in enumerate(dataset.params)}
    )


def refined_predictor(dataset, split: str, values: Mapping[str, np.ndarray], refiner, renderer):
    """Refine `values` (head -> (N,) estimates of the first N records of `split`) against the
    split's notes; returns (values to render with each record's true nuisance, `Refined`).

    Refinement estimates the pitch that sounds (label + the record's detune); rendering adds
    the record's detune again, so it is taken off here: the refined values are heard with the
    same nuisance as every other predictor, and their pitch error is the error in the pitch
    that sounds."""
    from src.matching.refine import SearchSpace

    n = len(next(iter(values.values())))
    target = split_targets(dataset, split, n, renderer)
    space = SearchSpace.of_renderer(renderer.renderer)
    result = refiner.refine_values(space, target, values)
    out = {k: np.asarray(v, dtype=np.float64) for k, v in result.values.items()}
    detune = renderer.nuisance_draws(split, n).get("detune_cents")
    if detune is not None and "pitch" in out:
        out["pitch"] = out["pitch"] - detune / 100.0
    return out, result
