"""Generate labelled VIMH datasets from a synth and a spectrogram imager, batch by batch.

Everything random flows from `dataset.seed`: the labels of each split come from their own
numpy stream, and each batch's audio randomness (start phase, noise floor) from a torch
generator seeded by (seed, split, batch). The same config and seed give identical bytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.data.vimh import VIMHWriter, build_info, dataset_folder_name
from src.synth.imaging import SpectrogramImager
from src.synth.params import (
    SynthParam,
    fixed_parameters,
    parse_params,
    sample_codes,
    values_from_codes,
)
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "identifiability": 3}


NOISE_BANK = 1 << 18


def noise_windows(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """(B, T) unit-variance white noise: each row a random window of one shared Gaussian bank.

    Drawing B*T normals dominated the cost of a batch; B windows of a 256k-sample bank give
    every record its own noise realisation for the price of a gather.
    """
    b, t = shape
    bank = torch.randn(NOISE_BANK + t, generator=generator)
    start = torch.randint(0, NOISE_BANK, (b,), generator=generator)
    return bank.unfold(0, t, 1)[start]


@dataclass
class Renderer:
    """Codes -> audio -> images, with the nuisance (phase, noise floor) drawn from `generator`."""

    synth: object
    imager: SpectrogramImager
    params: list[SynthParam]
    sample_rate: int
    n_samples: int
    noise_db: float | None

    @property
    def varying(self) -> list[SynthParam]:
        return [p for p in self.params if p.varying]

    def render(
        self, codes: np.ndarray, generator: torch.Generator
    ) -> tuple[np.ndarray, torch.Tensor]:
        values = {
            k: torch.from_numpy(v.astype(np.float32))
            for k, v in values_from_codes(self.params, codes).items()
        }
        audio = self.synth.render(values, self.sample_rate, self.n_samples, generator)
        if self.noise_db is not None:
            gain = 10 ** (self.noise_db / 20)
            audio = audio.add_(noise_windows(audio.shape, generator), alpha=gain)
        with torch.inference_mode():
            pixels = self.imager(audio)
        return pixels.numpy(), audio


def split_sizes(size: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Whole records per split; train takes the remainder so sizes add up to `size`."""
    unknown = set(fractions) - {"train", "val", "test"}
    if unknown or "train" not in fractions or "test" not in fractions:
        raise ValueError(
            f"dataset.splits must give train and test (and optionally val) fractions, "
            f"got {dict(fractions)}"
        )
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"dataset.splits fractions must add up to 1, got {total}")
    sizes = {k: round(size * float(v)) for k, v in fractions.items() if k != "train"}
    sizes = {"train": size - sum(sizes.values()), **sizes}
    empty = [k for k, v in sizes.items() if v <= 0 and fractions[k] > 0]
    if empty:
        raise ValueError(f"dataset.size={size} leaves no records for split(s) {empty}")
    return {k: v for k, v in sizes.items() if v > 0}


def batch_generator(seed: int, split: str, batch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, SPLIT_IDS[split], batch]).generate_state(1)[0]))
    return g


def build_renderer(cfg: DictConfig) -> Renderer:
    ds = cfg.dataset
    n_samples = round(ds.sample_rate * ds.duration)
    params = parse_params(OmegaConf.to_container(cfg.synth.params, resolve=True))
    synth = instantiate(cfg.synth.module)
    missing = set(synth.param_names) - {p.spec.name for p in params}
    if missing:
        raise ValueError(
            f"synth '{cfg.synth.name}' needs parameters {sorted(missing)} that synth.params lacks"
        )
    extra = {p.spec.name for p in params} - set(synth.param_names)
    if extra:
        raise ValueError(
            f"synth.params has {sorted(extra)}, which synth '{cfg.synth.name}' does not use: "
            f"such labels could not be learned"
        )
    spec = OmegaConf.to_container(cfg.spectrogram, resolve=True)
    imager = SpectrogramImager(sample_rate=int(ds.sample_rate), n_samples=n_samples, **spec)
    return Renderer(
        synth=synth,
        imager=imager,
        params=params,
        sample_rate=int(ds.sample_rate),
        n_samples=n_samples,
        noise_db=None if ds.noise_db is None else float(ds.noise_db),
    )


def dataset_path(cfg: DictConfig, renderer: Renderer) -> Path:
    ds = cfg.dataset
    name = ds.name or dataset_folder_name(
        height=renderer.imager.height,
        width=renderer.imager.width,
        channels=len(renderer.imager.channel_labels),
        sample_rate=int(ds.sample_rate),
        duration=float(ds.duration),
        samples=int(ds.size),
        synth=cfg.synth.name,
        n_params=len(renderer.varying),
    )
    return Path(ds.out_dir) / name


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
    from rich.console import Console
    from rich.table import Table

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


def generate_dataset(cfg: DictConfig) -> Path:
    """Write the dataset `cfg` describes; returns its folder. Refuses to overwrite by default."""
    ds = cfg.dataset
    torch.set_num_threads(int(ds.get("threads") or torch.get_num_threads()))
    renderer = build_renderer(cfg)
    out = dataset_path(cfg, renderer)
    overwrite = bool(ds.overwrite)
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} already exists; not overwriting it (pass dataset.overwrite=true to replace it)"
        )
    sizes = split_sizes(int(ds.size), ds.splits)
    seed = int(ds.seed)
    store_audio = bool(ds.store_audio)
    idc = cfg.identifiability
    ident = None
    if idc.enabled:
        ident = identifiability(renderer, seed, int(idc.base_points), float(idc.threshold))
        report_identifiability(ident, float(idc.threshold))
    batch = int(ds.batch_size)
    imager = renderer.imager
    started = time.perf_counter()
    with VIMHWriter(
        out,
        height=imager.height,
        width=imager.width,
        channels=len(imager.channel_labels),
        params=[p.spec for p in renderer.varying],
        split_sizes=sizes,
        audio_samples=renderer.n_samples if store_audio else None,
        overwrite=overwrite,
    ) as writer:
        for split, n in sizes.items():
            codes = sample_codes(
                renderer.params, n, np.random.default_rng([seed, SPLIT_IDS[split]])
            )
            for b, start in enumerate(range(0, n, batch)):
                c = codes[start : start + batch]
                pixels, audio = renderer.render(c, batch_generator(seed, split, b))
                writer.write(
                    split,
                    pixels,
                    c,
                    imager.spec_min,
                    imager.spec_max,
                    audio.numpy() if store_audio else None,
                )
        elapsed = time.perf_counter() - started
        info = build_info(
            dataset_name=out.name,
            height=imager.height,
            width=imager.width,
            channels=len(imager.channel_labels),
            channel_labels=imager.channel_labels,
            params=[p.spec for p in renderer.varying],
            fixed_parameters=fixed_parameters(renderer.params),
            split_sizes=sizes,
            sample_rate=int(ds.sample_rate),
            duration=float(ds.duration),
            synth_type=str(cfg.synth.name),
            spectrogram_config=imager.config(),
            extra={
                "generator": "neural-spectral-modeling generate_vimh.py",
                "seed": seed,
                "parameter_sampling": {p.spec.name: p.sampling for p in renderer.params},
                "parameter_defaults": {p.spec.name: p.default for p in renderer.params},
                "synth_config": OmegaConf.to_container(cfg.synth, resolve=True),
                "dataset_config": {
                    k: v
                    for k, v in OmegaConf.to_container(ds, resolve=True).items()
                    if k not in ("out_dir", "name", "overwrite", "threads")
                },
                "nuisance": {
                    "noise_db": renderer.noise_db,
                    "note": "random start phase per note, white noise at noise_db re full scale",
                },
                "audio": {
                    "stored": store_audio,
                    "files": {s: f"{s}_audio.npy" for s in sizes} if store_audio else {},
                    "n_samples": renderer.n_samples,
                    "dtype": "float32",
                },
                "identifiability": ident,
            },
        )
        writer.finish(info)
    total = sum(sizes.values())
    log.info(
        f"Wrote {total} records ({', '.join(f'{k} {v}' for k, v in sizes.items())}) to {out} "
        f"in {elapsed:.2f} s ({total / elapsed:,.0f} records/s)"
    )
    return out
