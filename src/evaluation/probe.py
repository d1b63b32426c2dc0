"""What probes can read from a front-end's features: how much of each head a band carries.

The features are a (frozen) front-end's output on waveforms, e.g. the log-mel with a mask-out
band; the probes are the reference predictors of every results table (1-NN and the ridge
probe of `src/metrics/baselines.py`), fitted on those features with the true labels instead
of on pixels. A head whose probe skill falls to about 0 (the train-mean guess) once a band is
masked had its information in that band; one whose skill stays is carried elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from src.data.vimh.format import ParamSpec
from src.metrics.baselines import score_baselines

PROBES = {"nn_pixels": "1-NN", "linear_probe": "ridge"}


@torch.no_grad()
def frontend_features(frontend: nn.Module, waveforms, batch_size: int = 256) -> np.ndarray:
    """(N, T) or (N, 1, T) waveforms -> (N, D) float32: the front-end's flattened output."""
    x = torch.as_tensor(np.asarray(waveforms), dtype=torch.float32)
    if x.dim() == 2:
        x = x.unsqueeze(1)
    was_training = frontend.training
    frontend.eval()
    try:
        chunks = [frontend(x[i : i + batch_size]).flatten(1) for i in range(0, len(x), batch_size)]
    finally:
        frontend.train(was_training)
    return torch.cat(chunks).numpy()


def probe_features(
    specs: Sequence[ParamSpec],
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{probe: test metrics} of each probe fitted on `splits` = {train, val, test: (features
    (N, D), codes (N, P))}; scored like the models (`test/score`, `test/<head>/mae`, ...)."""
    scores = score_baselines(specs, splits["train"], splits["val"], splits["test"], seed=seed)
    return {name: scores[key] for key, name in PROBES.items()}


def probe_frontend(
    frontend: nn.Module,
    datamodule,
    max_records: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """`probe_features` on a front-end's output for a waveform datamodule's splits (each
    split's first `max_records`, if given: the probes' cost grows with the train size)."""
    splits = {}
    for split in ("train", "val", "test"):
        waves, codes = datamodule.tensors(split)
        waves, codes = waves[:max_records], codes[:max_records]
        splits[split] = (frontend_features(frontend, waves), codes.numpy())
    return probe_features(datamodule.heads, splits, seed=seed)
