"""Resynthesis evaluation: render what each predictor says and measure how it sounds.

For the first N records of a split, every predictor's per-head values (natural units) are
rendered with the dataset's own synth, settings and nuisance stream (`DatasetRenderer`,
rebuilt from the JSON), and compared with the target notes (the stored waveforms, or the
true values rendered the same way) by the metrics of `src/metrics/audio.py`, plus each head's
absolute error. Predictors: the model, the `oracle` (true values: zero distance up to float
error, a check of the whole chain) and whatever baselines the caller passes (the reference
predictors of `src/metrics/baselines.py`: chance, train mean, 1-NN on pixels, ridge probe and
`oracle_class`, the true class at its grid value). The nuisance is the true one for every
predictor (each record's own draws, see `DatasetRenderer`). Rendering runs one generation
batch at a time for every predictor (vectorized, as fast as generation); metrics are computed
in cache-sized chunks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from src.data.vimh import ParamSpec, VIMHDataset
from src.generation.rebuild import DatasetRenderer, renderer_from_info
from src.metrics.audio import METRICS, AudioComparison, SoundDistances, summarize
from src.utils.pylogger import RankedLogger
from src.utils.threads import intra_op_threads

log = RankedLogger(__name__)

# Records per metric pass, on one thread: the spectra of 32 notes stay in cache, and the many
# small ops run 2-4x faster than on whole batches with shared threads (measured).
METRIC_CHUNK = 32


def error_key(head: str) -> str:
    return f"abs_err_{head}"


@dataclass
class Resynthesis:
    """Per-record results of every predictor, their summaries and a few notes to listen to."""

    split: str
    params: tuple[ParamSpec, ...]
    sample_rate: int
    target_source: str  # "stored" waveforms, or "rendered" from the true values
    true: dict[str, np.ndarray]  # head -> (N,)
    values: dict[str, dict[str, np.ndarray]]  # predictor -> head -> (N,)
    records: dict[str, dict[str, np.ndarray]]  # predictor -> metric or error -> (N,)
    listen: dict[str, torch.Tensor] = field(default_factory=dict)  # "target"/predictor -> audio
    render_seconds: float = 0.0

    @property
    def n_records(self) -> int:
        return len(next(iter(self.true.values())))

    @property
    def columns(self) -> list[str]:
        return [*METRICS, *(error_key(p.name) for p in self.params)]

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """predictor -> metric -> {n, mean, median, std, q25, q75}."""
        return {
            name: {c: summarize(torch.from_numpy(cols[c])) for c in self.columns}
            for name, cols in self.records.items()
        }


def evaluate_resynthesis(
    dataset: VIMHDataset,
    predictors: Mapping[str, Mapping[str, np.ndarray]],
    split: str = "test",
    n_listen: int = 4,
    renderer: DatasetRenderer | None = None,
) -> Resynthesis:
    """Render and measure every predictor on the first N records of `split` (see module doc).

    `predictors`: name -> head -> (N,) values in natural units, record i of the split at i
    (the model, and baselines from `src.metrics.baselines.datamodule_baseline_values`). The
    `oracle` (the true values) is added: it must reproduce the target, a check of the chain.
    """
    names = [p.name for p in dataset.params]
    if not predictors:
        raise ValueError("no predictor to evaluate")
    for name, values in predictors.items():
        if set(values) != set(names):
            raise ValueError(f"{name}: predictions for heads {sorted(values)}, dataset has {names}")
    n = len(next(iter(next(iter(predictors.values())).values())))
    part = dataset[split]
    if not 0 < n <= len(part):
        raise ValueError(f"{n} predictions for a split of {len(part)} records")
    true_all = part.values()[:n]
    true = {p: true_all[:, i] for i, p in enumerate(names)}
    preds = {
        name: {k: np.asarray(v, dtype=np.float64)[:n] for k, v in values.items()}
        for name, values in predictors.items()
    }
    if any(len(v) != n for values in preds.values() for v in values.values()):
        raise ValueError(f"every predictor needs {n} values per head")
    preds["oracle"] = true
    dr = renderer or renderer_from_info(dataset.info)
    stored = dataset.audio(split) if dataset.audio_available else None
    metrics = {name: SoundDistances(dr.sample_rate, METRICS) for name in preds}
    records: dict[str, dict[str, np.ndarray]] = {name: {} for name in preds}
    for name, vals in preds.items():
        for p in dataset.params:
            records[name][error_key(p.name)] = np.abs(vals[p.name] - true[p.name])
    listen: dict[str, list[torch.Tensor]] = {k: [] for k in ("target", *preds)}
    render_s = 0.0
    for b, start, stop in dr.batches(split, n):
        stop = min(stop, n)
        started = time.perf_counter()
        audio = {
            name: dr.render_batch(split, b, {k: v[start:stop] for k, v in vals.items()})
            for name, vals in preds.items()
        }
        render_s += time.perf_counter() - started
        if stored is not None:
            target = torch.from_numpy(np.array(stored[start:stop]))
        else:
            target = audio["oracle"]
        with intra_op_threads(1):
            for c0 in range(0, stop - start, METRIC_CHUNK):
                c1 = min(c0 + METRIC_CHUNK, stop - start)
                compare = AudioComparison(target[c0:c1], dr.sample_rate)
                for name in preds:
                    metrics[name].update(audio[name][c0:c1], comparison=compare)
        want = max(0, min(n_listen, stop) - start)
        if want:
            listen["target"].append(target[:want])
            for name in preds:
                listen[name].append(audio[name][:want])
    for name, metric in metrics.items():
        records[name].update({k: v.numpy() for k, v in metric.values().items()})
    rendered = n * len(preds)
    log.info(
        f"Resynthesis of {n} {split} records x {len(preds)} predictors: rendered "
        f"{rendered} notes in {render_s:.2f} s ({rendered / max(render_s, 1e-9):,.0f} notes/s)"
    )
    return Resynthesis(
        split=split,
        params=tuple(dataset.params),
        sample_rate=dr.sample_rate,
        target_source="stored" if stored is not None else "rendered",
        true=true,
        values=preds,
        records=records,
        listen={k: torch.cat(v) for k, v in listen.items() if v},
        render_seconds=render_s,
    )
