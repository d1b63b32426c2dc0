"""Synthesize a labelled VIMH dataset: `python generate_vimh.py [overrides]` (or src/generate.py).

The generation pipeline beside train and eval: the recipe (configs/generate.yaml) names the
folder, the renderer turns sampled labels into audio and images batch by batch, the
identifiability check reports which labels a model can learn, and the atomic writer puts the
finished dataset in place.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from src.data.vimh import VIMHWriter, audio_filename, build_info
from src.errors import DatasetExistsError
from src.generation.identifiability import identifiability, report_identifiability
from src.generation.params import fixed_parameters, sample_codes
from src.generation.recipe import GENERATOR_VERSION, NOT_RECIPE, dataset_path, recipe_digest
from src.generation.renderer import SPLIT_IDS, batch_generator, build_renderer, split_sizes
from src.paths import CONFIG_DIR
from src.utils.pylogger import RankedLogger
from src.utils.utils import user_errors

log = RankedLogger(__name__)


def generate_dataset(cfg: DictConfig) -> Path:
    """Write the dataset `cfg` describes; returns its folder. Refuses to overwrite by default."""
    ds = cfg.dataset
    torch.set_num_threads(int(ds.get("threads") or torch.get_num_threads()))
    renderer = build_renderer(cfg)
    out = dataset_path(cfg)
    overwrite = bool(ds.overwrite)
    if out.exists() and not overwrite:
        raise DatasetExistsError(
            f"{out} already exists; not overwriting it (pass dataset.overwrite=true to replace it)"
        )
    sizes = split_sizes(int(ds.size), ds.splits)
    seed = int(ds.seed)
    store_audio = bool(ds.store_audio)
    idc = cfg.identifiability
    ident = None
    if idc.enabled:
        ident = identifiability(
            renderer, seed, int(idc.base_points), float(idc.min_z), int(idc.probe_records)
        )
        report_identifiability(ident)
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
                "recipe_digest": recipe_digest(cfg),
                "generator_version": GENERATOR_VERSION,
                "parameter_sampling": {p.spec.name: p.sampling for p in renderer.params},
                "parameter_defaults": {p.spec.name: p.default for p in renderer.params},
                "synth_config": OmegaConf.to_container(cfg.synth, resolve=True),
                "dataset_config": {
                    k: v
                    for k, v in OmegaConf.to_container(ds, resolve=True).items()
                    if k not in NOT_RECIPE
                },
                "nuisance": {
                    **renderer.nuisance.describe(),
                    "note": "unlabelled, drawn per record; plus each synth's random start phases",
                },
                "audio": {
                    "stored": store_audio,
                    "files": {s: audio_filename(s) for s in sizes} if store_audio else {},
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


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="generate")
def main(cfg: DictConfig) -> str:
    with user_errors():
        return str(generate_dataset(cfg))


if __name__ == "__main__":
    main()
