"""Can a model learn each label from the images? Measured before a dataset is written.

For each labelled parameter the images of a class sweep (the other parameters held at random
base points) are compared with the change that the unlabelled randomness alone makes.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from src.generation.params import sample_codes
from src.generation.renderer import SPLIT_IDS, Renderer, batch_generator
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def identifiability(
    renderer: Renderer, seed: int, base_points: int = 8, threshold: float = 0.1
) -> list[dict]:
    """How much the images move when one label moves alone, against nuisance alone.

    For each varying parameter, `base_points` random settings of the other parameters are held
    while this one steps through its classes. `step_effect` is the mean absolute pixel change
    (in 8-bit levels) between neighbouring classes, for the hardest neighbour pair; `nuisance`
    is the change between two renders of the same labels with different phase/noise draws.
    A label whose step effect does not exceed the nuisance by `threshold` cannot be learned.
    """
    rng = np.random.default_rng([seed, SPLIT_IDS["identifiability"]])
    varying = renderer.varying
    rows = []
    for j, p in enumerate(varying):
        k = p.spec.num_classes
        base = sample_codes(renderer.params, base_points, rng)  # (M, P)
        codes = np.repeat(base, k, axis=0)  # (M*K, P), class sweep within each base point
        codes[:, j] = np.tile(p.spec.class_code(np.arange(k)), base_points)
        g1 = batch_generator(seed, "identifiability", 2 * j)
        g2 = batch_generator(seed, "identifiability", 2 * j + 1)
        img1 = renderer.render(codes, g1)[0].astype(np.float32).reshape(base_points, k, -1)
        img2 = renderer.render(codes, g2)[0].astype(np.float32).reshape(base_points, k, -1)
        step = np.abs(np.diff(img1, axis=1)).mean(axis=(0, 2))  # (K-1,) per neighbour pair
        span = np.abs(img1[:, -1] - img1[:, 0]).mean()
        nuisance = float(np.abs(img1 - img2).mean())
        effect = float(step.min())
        rows.append(
            {
                "parameter": p.spec.name,
                "classes": k,
                "step_effect": round(effect, 4),
                "mean_step_effect": round(float(step.mean()), 4),
                "range_effect": round(float(span), 4),
                "nuisance": round(nuisance, 4),
                "learnable": bool(effect - nuisance > threshold),
            }
        )
    return rows


def report_identifiability(rows: list[dict], threshold: float) -> None:
    table = Table(title="Identifiability (mean |Δpixel| in 8-bit levels)")
    for col in ("parameter", "classes", "hardest step", "mean step", "full range", "nuisance", ""):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["parameter"],
            str(r["classes"]),
            f"{r['step_effect']:.3f}",
            f"{r['mean_step_effect']:.3f}",
            f"{r['range_effect']:.3f}",
            f"{r['nuisance']:.3f}",
            "ok" if r["learnable"] else "[bold red]NOT LEARNABLE[/]",
        )
    Console(stderr=True).print(table)
    for r in rows:
        if not r["learnable"]:
            log.warning(
                f"LABEL NOT LEARNABLE: moving '{r['parameter']}' by one class changes the images "
                f"by {r['step_effect']:.3f} levels, not more than {threshold} above the "
                f"nuisance ({r['nuisance']:.3f}). A model cannot learn this label from these "
                f"images; widen its step, change the spectrogram, or fix the parameter."
            )
