"""Can a model learn each label from the images? Measured before a dataset is written.

Two checks per labelled parameter:

1. **Class steps against nuisance.** At `base_points` random settings of the other parameters,
   the parameter sweeps its classes, every class rendered with the same nuisance draw, so the
   image difference Δ between neighbouring classes is the label's effect alone. A second draw
   of the same sweep gives each pixel's nuisance spread σ. A step's discriminability is
   d' = sqrt(Σ Δ² / σ²) over the pixels (the separation of the two classes for an ideal
   linear detector under independent per-pixel nuisance); it is *hidden* below `min_z`.
   Reported: the worst d', the fraction of hidden steps and of base points with a hidden step.
   A parameter with hidden steps is flagged "partly unlearnable (x% of steps)"; with (nearly)
   all hidden, "NOT LEARNABLE". Averaging over base points would hide a parameter that has
   no effect in part of the space (FM's ratio at index 0), so the worst case and the
   fractions decide.
2. **A quick probe.** 1-NN and a linear probe on the pixels of a small freshly rendered sample:
   accuracy per head against chance.
"""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from src.generation.params import sample_codes
from src.generation.renderer import SPLIT_IDS, Renderer, batch_generator
from src.metrics.baselines import score_baselines
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)
FULLY_HIDDEN = 0.9  # fraction of hidden steps from which a label counts as not learnable
PARTLY_HIDDEN = 0.02  # ... and above which it is flagged partly unlearnable


def identifiability(
    renderer: Renderer,
    seed: int,
    base_points: int = 8,
    min_z: float = 3.0,
    probe_records: int = 0,
) -> list[dict]:
    """One row per labelled parameter (see the module docstring)."""
    rng = np.random.default_rng([seed, SPLIT_IDS["identifiability"]])
    rows = []
    for j, p in enumerate(renderer.varying):
        k = p.spec.num_classes
        base = sample_codes(renderer.params, base_points, rng)  # (M, P)
        # Record m of every class shares its random draws (groups), so differences between
        # neighbouring classes are the label's alone.
        codes = np.repeat(base, k, axis=0)  # (M*K, P): base point m, classes 0..K-1
        codes[:, j] = np.tile(p.spec.class_code(np.arange(k)), base_points)
        groups = np.repeat(np.arange(base_points), k)
        sweeps = [
            renderer.render(codes, batch_generator(seed, "identifiability", draw), groups)[0]
            .reshape(base_points, k, -1)
            .astype(np.float32)
            for draw in (2 * j, 2 * j + 1)
        ]
        effect = np.diff(sweeps[0], axis=1)  # (M, K-1, D)
        var = np.maximum(((sweeps[1] - sweeps[0]) ** 2).mean(axis=(0, 1)) / 2, 0.25)  # (D,)
        d = np.sqrt((effect**2 / var).sum(axis=2))  # (M, K-1)
        hidden = d < min_z
        frac_steps = float(hidden.mean())
        rows.append(
            {
                "parameter": p.spec.name,
                "classes": k,
                "mean_step": round(float(np.abs(effect).mean()), 4),
                "nuisance": round(float(np.sqrt(var).mean()), 4),
                "worst_d": round(float(d.min()), 2),
                "median_d": round(float(np.median(d)), 2),
                "hidden_steps": round(frac_steps, 4),
                "hidden_base_points": round(float(hidden.any(axis=1).mean()), 4),
                "verdict": verdict(frac_steps),
                "learnable": frac_steps <= PARTLY_HIDDEN,
            }
        )
    if probe_records > 0:
        for row, acc in zip(rows, probe(renderer, seed, probe_records)):
            row.update(acc)
    return rows


def verdict(hidden_steps: float) -> str:
    if hidden_steps >= FULLY_HIDDEN:
        return "not learnable"
    if hidden_steps > PARTLY_HIDDEN:
        return f"partly unlearnable ({100 * hidden_steps:.0f}% of steps)"
    return "learnable"


def probe(renderer: Renderer, seed: int, n: int) -> list[dict]:
    """Per head: chance, 1-NN and linear-probe accuracy on n fresh records (60/20/20 split)."""
    rng = np.random.default_rng([seed, SPLIT_IDS["identifiability"], 1])
    codes = sample_codes(renderer.params, n, rng)
    images = np.concatenate(
        [
            renderer.render(
                codes[s : s + 1024], batch_generator(seed, "identifiability", 1000 + b)
            )[0]
            for b, s in enumerate(range(0, n, 1024))
        ]
    )
    a, b = int(0.6 * n), int(0.8 * n)
    specs = [p.spec for p in renderer.varying]
    scores = score_baselines(
        specs, (images[:a], codes[:a]), (images[a:b], codes[a:b]), (images[b:], codes[b:])
    )
    return [
        {
            "probe_chance": round(1.0 / s.num_classes, 4),
            "probe_nn": round(scores["nn_pixels"][f"test/{s.name}/acc"], 4),
            "probe_linear": round(scores["linear_probe"][f"test/{s.name}/acc"], 4),
        }
        for s in specs
    ]


def report_identifiability(rows: list[dict]) -> None:
    """A rich table on stderr; loud warnings for every label that is not fully learnable."""
    table = Table(title="Identifiability (8-bit levels; d' of a class step against nuisance)")
    cols = ["parameter", "classes", "mean |step|", "nuisance σ", "median d'", "worst d'", "hidden"]
    has_probe = rows and "probe_nn" in rows[0]
    if has_probe:
        cols += ["1-NN acc", "linear acc", "chance"]
    for col in [*cols, "verdict"]:
        table.add_column(col)
    for r in rows:
        cells = [
            r["parameter"],
            str(r["classes"]),
            f"{r['mean_step']:.3f}",
            f"{r['nuisance']:.3f}",
            f"{r['median_d']:.1f}",
            f"{r['worst_d']:.1f}",
            f"{100 * r['hidden_steps']:.1f}%",
        ]
        if has_probe:
            cells += [
                f"{r['probe_nn']:.3f}",
                f"{r['probe_linear']:.3f}",
                f"{r['probe_chance']:.3f}",
            ]
        style = "" if r["learnable"] else "[bold red]"
        table.add_row(*cells, f"{style}{r['verdict'].upper() if style else r['verdict']}")
    console = Console(stderr=True)
    if not console.is_terminal:  # logs: wide enough for every column
        console = Console(stderr=True, width=160)
    console.print(table)
    for r in rows:
        if not r["learnable"]:
            log.warning(
                f"LABEL {r['verdict'].upper()}: '{r['parameter']}': "
                f"{100 * r['hidden_steps']:.1f}% of its class steps (at "
                f"{100 * r['hidden_base_points']:.0f}% of the base points) are hidden by the "
                f"nuisance (d' below min_z; worst d' {r['worst_d']}). A model cannot "
                f"learn it there; widen its step, change the spectrogram or restrict the ranges "
                f"of the parameters that hide it."
            )
