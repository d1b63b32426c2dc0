"""Labels -> audio -> images: the renderer that dataset generation and its checks share.

Everything random flows from the dataset seed: the labels of each split come from their own
numpy stream, and each batch's audio randomness (start phase, noise floor) from a torch
generator seeded by (seed, split, batch). The same config and seed give identical bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from src.errors import ConfigError
from src.generation.nuisance import Nuisance
from src.generation.params import SynthParam, parse_params, values_from_codes
from src.imaging import SpectrogramImager
from src.synth.base import Randomness

SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "identifiability": 3}


@dataclass
class Renderer:
    """Codes -> audio -> images; all randomness (the synth's start phases, the nuisance) is
    drawn from the batch's generator, in a fixed order."""

    synth: object
    imager: SpectrogramImager
    params: list[SynthParam]
    sample_rate: int
    n_samples: int
    nuisance: Nuisance

    @property
    def varying(self) -> list[SynthParam]:
        return [p for p in self.params if p.varying]

    def render(
        self, codes: np.ndarray, generator: torch.Generator, groups: np.ndarray | None = None
    ) -> tuple[np.ndarray, torch.Tensor]:
        """(B, P) codes -> (uint8 images, float32 audio). Records with equal `groups` entries
        share every random draw (phases and nuisance)."""
        values = {
            k: torch.from_numpy(v.astype(np.float32))
            for k, v in values_from_codes(self.params, codes).items()
        }
        audio = self.audio(values, generator, groups)
        return self.image(audio).numpy(), audio

    def audio(
        self,
        values: Mapping[str, torch.Tensor],
        generator: torch.Generator,
        groups: np.ndarray | None = None,
        record: dict | None = None,
    ) -> torch.Tensor:
        """(B, n_samples) notes of every synth parameter's (B,) natural values, nuisance added.

        Resynthesis renders predicted values through this too, so a prediction is heard with
        the synth, settings and nuisance stream that made the dataset. `record` (if given)
        receives the nuisance drawn for each note (src/generation/nuisance.py)."""
        values = dict(values)
        random = Randomness(generator, None if groups is None else torch.as_tensor(groups))
        labelled = {p.spec.name for p in self.varying}
        self.nuisance.adjust_values(values, labelled, random, record)
        audio = self.synth.render(values, self.sample_rate, self.n_samples, random)
        return self.nuisance.adjust_audio(audio, self.sample_rate, random, record)

    def image(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 images of (B, n_samples) audio (generation and prediction)."""
        with torch.inference_mode():
            return self.imager(audio)


def split_sizes(size: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Whole records per split; train takes the remainder so sizes add up to `size`."""
    unknown = set(fractions) - {"train", "val", "test"}
    if unknown or "train" not in fractions or "test" not in fractions:
        raise ConfigError(
            f"dataset.splits must give train and test (and optionally val) fractions, "
            f"got {dict(fractions)}"
        )
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(f"dataset.splits fractions must add up to 1, got {total}")
    if float(fractions["test"]) <= 0:
        raise ConfigError(
            "dataset.splits.test must be > 0: training tests its best checkpoint on the test split"
        )
    sizes = {k: round(size * float(v)) for k, v in fractions.items() if k != "train"}
    sizes = {"train": size - sum(sizes.values()), **sizes}
    empty = [k for k, v in sizes.items() if v <= 0 and fractions[k] > 0]
    if empty:
        raise ConfigError(f"dataset.size={size} leaves no records for split(s) {empty}")
    return {k: v for k, v in sizes.items() if v > 0}


def batch_generator(seed: int, split: str, batch: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, SPLIT_IDS[split], batch]).generate_state(1)[0]))
    return g


def build_renderer(cfg: DictConfig) -> Renderer:
    """The synth, imager and nuisance a generation config describes (nothing rendered yet)."""
    ds = cfg.dataset
    n_samples = round(ds.sample_rate * ds.duration)
    params = parse_params(OmegaConf.to_container(cfg.synth.params, resolve=True))
    synth = instantiate(cfg.synth.module)
    missing = set(synth.param_names) - {p.spec.name for p in params}
    if missing:
        raise ConfigError(
            f"synth '{cfg.synth.name}' needs parameters {sorted(missing)} that synth.params lacks"
        )
    extra = {p.spec.name for p in params} - set(synth.param_names)
    if extra:
        raise ConfigError(
            f"synth.params has {sorted(extra)}, which synth '{cfg.synth.name}' does not use: "
            f"such labels could not be learned"
        )
    spec = OmegaConf.to_container(cfg.spectrogram, resolve=True)
    try:
        imager = SpectrogramImager(sample_rate=int(ds.sample_rate), n_samples=n_samples, **spec)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"spectrogram: {e}") from e
    return Renderer(
        synth=synth,
        imager=imager,
        params=params,
        sample_rate=int(ds.sample_rate),
        n_samples=n_samples,
        nuisance=Nuisance.from_config(OmegaConf.to_container(cfg.nuisance, resolve=True)),
    )
