"""Refine parameter estimates through the synth: from a first guess (a network's, 1-NN's, the
train mean), search the synth's parameters whose rendering is closest to the target note by the
spectral loss of `src/matching/loss.py`.

Two searches over the same space, both batched over many notes:

- `refine_gradient`: Adam on the parameters through the differentiable twin of the synth
  (`src/matching/diffsynth.py`; saw and FM), the best point seen kept per note (the loss is
  not convex in pitch).
- `refine_cmaes`: CMA-ES (the `cmaes` package: a small, well-kept numpy implementation with
  ask/tell and box bounds) with the generation synth itself, so it works for every synth,
  the Moog ladder included. Each note has its own search; every generation renders the whole
  population of every note in one batch.

The space (`SearchSpace`) is the unit interval of each labelled parameter along its axis
(octaves for log scales), plus two nuisances estimated with the parameters: the onset (0 to
`onset_max_s`) and, where the synth's attack is not a label, the attack time (log axis). The
noise floor is kept out of the loss (its floor), start phases cannot reach it, and detune is
absorbed by the pitch, so the refined pitch is the pitch that sounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from src.data.vimh.format import ParamSpec
from src.generation.nuisance import delayed
from src.matching.diffsynth import differentiable
from src.matching.loss import SpectralLoss
from src.metrics.pitch import yin_f0

ONSET_MAX_S = 0.1
ATTACK_RANGE_S = (0.001, 0.1)
RENDER_CHUNK = 1024  # notes rendered (and scored) at once


def _at(spec: ParamSpec, u: Tensor) -> Tensor:
    """Unit position along the axis -> natural value (torch, differentiable)."""
    x = u.double() * spec.extent
    return spec.min * torch.exp2(x) if spec.scale == "log" else spec.min + x


@dataclass
class SearchSpace:
    """What refinement searches: the labelled parameters and the onset and attack nuisances,
    each on [0, 1]. Built for one synth, rate and note length."""

    synth: object
    sample_rate: int
    n_samples: int
    specs: tuple[ParamSpec, ...]
    fixed: Mapping[str, float]
    onset_max_s: float = ONSET_MAX_S
    attack_range_s: tuple[float, float] = ATTACK_RANGE_S
    search_attack: bool = field(init=False)

    def __post_init__(self) -> None:
        labelled = {s.name for s in self.specs}
        names = getattr(self.synth, "param_names", ())
        self.search_attack = "attack" in names and "attack" not in labelled

    @classmethod
    def of_renderer(cls, renderer, **kwargs) -> SearchSpace:
        """The space of a dataset's renderer (`src.generation.renderer.Renderer`)."""
        return cls(
            synth=renderer.synth,
            sample_rate=renderer.sample_rate,
            n_samples=renderer.n_samples,
            specs=tuple(p.spec for p in renderer.params if p.varying),
            fixed={p.spec.name: float(p.default) for p in renderer.params if not p.varying},
            **kwargs,
        )

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs] + ["onset"] + (["attack"] if self.search_attack else [])

    @property
    def dim(self) -> int:
        return len(self.names)

    def decode(self, u: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """(B, D) unit coordinates -> (every synth parameter's (B,) values, onset seconds)."""
        u = u.clamp(0.0, 1.0)
        values = {s.name: _at(s, u[:, i]) for i, s in enumerate(self.specs)}
        b = len(u)
        for name, v in self.fixed.items():
            values[name] = torch.full((b,), v, dtype=torch.float64)
        onset = u[:, len(self.specs)].double() * self.onset_max_s
        if self.search_attack:
            lo, hi = (math.log(v) for v in self.attack_range_s)
            values["attack"] = torch.exp(lo + (hi - lo) * u[:, len(self.specs) + 1].double())
        return values, onset

    def encode(
        self, values: Mapping[str, np.ndarray], onset_s: np.ndarray, attack_s: np.ndarray | None
    ) -> Tensor:
        """Natural values of the labelled parameters, onsets and attacks -> (B, D) in [0, 1]."""
        cols = [np.clip(s.to_unit(np.asarray(values[s.name])), 0, 1) for s in self.specs]
        cols.append(np.clip(np.asarray(onset_s, dtype=np.float64) / self.onset_max_s, 0, 1))
        if self.search_attack:
            lo, hi = (math.log(v) for v in self.attack_range_s)
            a = np.full(len(cols[0]), 0.01) if attack_s is None else np.asarray(attack_s)
            cols.append(np.clip((np.log(a) - lo) / (hi - lo), 0, 1))
        return torch.from_numpy(np.stack(cols, axis=1))

    def render(self, u: Tensor, seed: int = 0) -> Tensor:
        """(B, T) notes of unit coordinates by the generation synth (no gradient)."""
        values, onset = self.decode(u)
        audio = self.synth.render(
            {k: v.float() for k, v in values.items()},
            self.sample_rate,
            self.n_samples,
            torch.Generator().manual_seed(seed),
        )
        return delayed(audio, (onset * self.sample_rate).round().long())

    def differentiable(self):
        """A function (B, D) unit coordinates -> (B, T) notes with gradients, or None."""
        render = differentiable(self.synth)
        if render is None:
            return None

        def run(u: Tensor) -> Tensor:
            values, onset = self.decode(u)
            return render(values, self.sample_rate, self.n_samples, onset)

        return run


@dataclass
class Refined:
    """The result for B notes: refined values (labelled parameters, natural units), onsets,
    attacks, the loss before and after, and what it cost."""

    values: dict[str, np.ndarray]
    onset_s: np.ndarray
    attack_s: np.ndarray | None
    loss_start: np.ndarray
    loss_end: np.ndarray
    renders: int
    seconds: float
    unit: Tensor  # (B, D) the refined point of `SearchSpace`, to render it again

    @property
    def renders_per_note(self) -> float:
        return self.renders / max(1, len(self.onset_s))


def _result(space, u: Tensor, start: Tensor, end: Tensor, renders: int, started: float):
    values, onset = space.decode(u)
    return Refined(
        values={s.name: values[s.name].numpy() for s in space.specs},
        onset_s=onset.numpy(),
        attack_s=values["attack"].numpy() if space.search_attack else None,
        loss_start=start.numpy(),
        loss_end=end.numpy(),
        renders=renders,
        seconds=time.perf_counter() - started,
        unit=u.detach().clone(),
    )


@torch.no_grad()
def score(space: SearchSpace, loss: SpectralLoss, u: Tensor, index: Tensor) -> Tensor:
    """Loss of each row of `u` against target `index[row]`, rendered in chunks."""
    out = torch.empty(len(u), dtype=torch.float64)
    for s in range(0, len(u), RENDER_CHUNK):
        part = slice(s, s + RENDER_CHUNK)
        out[part] = loss(space.render(u[part]), index[part]).double()
    return out


def refine_gradient(
    space: SearchSpace,
    target: Tensor,
    start: Tensor,
    steps: int = 150,
    lr: float = 0.01,
) -> Refined:
    """Adam on the unit coordinates through the differentiable synth, cosine-decayed; each
    note keeps the best point it visited. `start`: (B, D) unit coordinates."""
    render = space.differentiable()
    if render is None:
        raise ValueError(f"{type(space.synth).__name__} has no differentiable rendering")
    began = time.perf_counter()
    loss_fn = SpectralLoss(target, space.sample_rate)
    u = start.clone().double().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    best_u, best = start.clone().double(), torch.full((len(start),), math.inf, dtype=torch.float64)
    first = None
    for _ in range(steps + 1):
        loss = loss_fn(render(u.clamp(0.0, 1.0))).double()
        with torch.no_grad():
            if first is None:
                first = loss.detach().clone()
            better = loss < best
            best = torch.where(better, loss, best)
            best_u[better] = u.detach()[better]
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            u.clamp_(0.0, 1.0)
    return _result(space, best_u, first, best, (steps + 1) * len(start), began)


def refine_cmaes(
    space: SearchSpace,
    target: Tensor,
    start: Tensor,
    generations: int = 60,
    sigma: float = 0.05,
    population: int | None = None,
    seed: int = 0,
) -> Refined:
    """CMA-ES per note from `start` (B, D), all notes' populations rendered together."""
    from cmaes import CMA

    began = time.perf_counter()
    b, d = start.shape
    loss_fn = SpectralLoss(target, space.sample_rate)
    first = score(space, loss_fn, start.double(), torch.arange(b))
    bounds = np.tile([0.0, 1.0], (d, 1))
    searches = [
        CMA(
            mean=start[i].double().numpy().clip(1e-6, 1 - 1e-6),
            sigma=sigma,
            bounds=bounds,
            population_size=population,
            seed=seed + i,
        )
        for i in range(b)
    ]
    pop = searches[0].population_size
    index = torch.arange(b).repeat_interleave(pop)
    best_u, best = start.clone().double(), first.clone()
    for _ in range(generations):
        x = np.stack([np.stack([s.ask() for _ in range(pop)]) for s in searches])  # (B, pop, D)
        losses = score(space, loss_fn, torch.from_numpy(x.reshape(-1, d)), index).view(b, pop)
        for i, s in enumerate(searches):
            s.tell(list(zip(x[i], losses[i].tolist())))
        k = losses.argmin(dim=1)
        top = losses[torch.arange(b), k]
        better = top < best
        best = torch.where(better, top, best)
        best_u[better] = torch.from_numpy(x[np.arange(b), k.numpy()])[better]
    return _result(space, best_u, first, best, b * (1 + generations * pop), began)


def estimate_onset(audio: Tensor, sample_rate: int, below_db: float = 20.0) -> Tensor:
    """(B,) seconds where each note first comes within `below_db` of its loudest 4 ms frame:
    a start for the onset search."""
    hop = max(1, round(0.004 * sample_rate))
    frames = audio.float().unfold(1, hop, hop).square().mean(dim=-1)
    loud = frames >= frames.amax(dim=1, keepdim=True) * 10 ** (-below_db / 10)
    first = loud.float().argmax(dim=1)
    return (first * hop / sample_rate).double()


METHODS = ("cmaes", "gradient")
PITCH_STARTS = ("given", "tracker", "best")


class Refiner:
    """Refinement as a configurable object (configs/refiner/default.yaml): `method` cmaes (any
    synth) or gradient (synths with a differentiable twin; others fall back to cmaes, with a
    warning), and each method's budget."""

    def __init__(
        self,
        method: str = "cmaes",
        generations: int = 40,
        sigma: float = 0.05,
        population: int | None = None,
        steps: int = 100,
        lr: float = 0.01,
        seed: int = 0,
        pitch_start: str = "best",
    ) -> None:
        if pitch_start not in PITCH_STARTS:
            raise ValueError(
                f"refiner.pitch_start must be one of {PITCH_STARTS}, got {pitch_start!r}"
            )
        if method not in METHODS:
            raise ValueError(f"refiner.method must be one of {METHODS}, got {method!r}")
        if generations < 1 or steps < 1:
            raise ValueError("refiner.generations and refiner.steps must be >= 1")
        if not 0 < sigma <= 0.5 or lr <= 0:
            raise ValueError("refiner.sigma must be in (0, 0.5] and refiner.lr > 0")
        if population is not None and population < 2:
            raise ValueError(f"refiner.population must be >= 2 or null, got {population}")
        self.method = method
        self.generations, self.sigma, self.population = int(generations), float(sigma), population
        self.steps, self.lr, self.seed = int(steps), float(lr), int(seed)
        self.pitch_start = pitch_start

    def method_for(self, space: SearchSpace) -> str:
        if self.method == "gradient" and space.differentiable() is None:
            return "cmaes"
        return self.method

    def __call__(self, space: SearchSpace, target: Tensor, start: Tensor) -> Refined:
        if self.method_for(space) == "gradient":
            return refine_gradient(space, target, start, steps=self.steps, lr=self.lr)
        return refine_cmaes(
            space,
            target,
            start,
            generations=self.generations,
            sigma=self.sigma,
            population=self.population,
            seed=self.seed,
        )

    def refine_values(
        self, space: SearchSpace, target: Tensor, values: Mapping[str, np.ndarray]
    ) -> Refined:
        """Refine natural-unit estimates of the labelled parameters for (B, T) target notes;
        the onset starts where each note comes up, the attack at 10 ms. A `pitch` head (MIDI)
        starts at the given estimate (`pitch_start: given`), at the f0 tracker's
        (`tracker`), or at whichever of the two renders closer to the note (`best`): a
        network far off on a sound unlike its training data is then no worse a start than
        the tracker."""
        onset = estimate_onset(target, space.sample_rate).numpy()
        start = space.encode(values, onset, None)
        names = [s.name for s in space.specs]
        if self.pitch_start != "given" and "pitch" in names:
            f0 = yin_f0(target, space.sample_rate)[0].double().numpy()
            midi = np.where(
                np.isfinite(f0),
                69 + 12 * np.log2(np.nan_to_num(f0, nan=440) / 440),
                values["pitch"],
            )
            tracked = space.encode({**values, "pitch": midi}, onset, None)
            if self.pitch_start == "tracker":
                start = tracked
            else:
                loss = SpectralLoss(target, space.sample_rate)
                both = torch.cat([start, tracked]).double()
                index = torch.arange(len(start)).repeat(2)
                scores = score(space, loss, both, index).view(2, -1)
                start = torch.where((scores[1] < scores[0])[:, None], tracked, start)
        return self(space, target, start)


def refine_notes(
    refiner: Refiner, renderer, notes: Tensor, values: Mapping[str, np.ndarray]
) -> tuple[Refined, Tensor]:
    """Refine estimates for (B, T) notes with a dataset's `Renderer`; returns the result and
    the refined notes rendered (estimated onset and attack, no noise)."""
    space = SearchSpace.of_renderer(renderer)
    if notes.shape[1] != space.n_samples:
        raise ValueError(f"notes of {notes.shape[1]} samples, the synth renders {space.n_samples}")
    result = refiner.refine_values(space, notes.float(), values)
    with torch.no_grad():
        return result, space.render(result.unit)


def refined_row(refined: Refined, heads: list[str], i: int) -> list[float]:
    """The CSV cells of note i: refined values, onset, loss before and after."""
    return [
        *(float(refined.values[h][i]) for h in heads),
        float(refined.onset_s[i]),
        float(refined.loss_start[i]),
        float(refined.loss_end[i]),
    ]
