"""Synthesize a labelled VIMH dataset: `python generate_vimh.py [overrides]` (or src/generate.py).

The generation pipeline beside train and eval: the recipe (configs/generate.yaml) names the
folder, the renderer turns sampled labels into audio and images batch by batch, the
identifiability check reports which labels a model can learn, and the atomic writer puts the
finished dataset in place. Batches go through part files (`src/generation/parts.py`), so the
work can be split over worker processes (`dataset.workers`) and machines (`dataset.num_shards`,
`dataset.shard`), resumes after an interruption, and gives the same bytes however it is split.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from src.data.vimh import VIMHWriter, build_info
from src.data.vimh.format import CURRENT_VERSION, audio_entry, record_bytes
from src.errors import DataError, DatasetExistsError, DatasetNotFoundError
from src.generation.identifiability import identifiability, report_identifiability
from src.generation.parallel import BatchMaker, render_config, render_units, worker_threads
from src.generation.params import fixed_parameters
from src.generation.parts import PartStore, Unit, owner, plan_units, shard_units
from src.generation.progress import GenerationProgress
from src.generation.recipe import GENERATOR_VERSION, NOT_RECIPE, dataset_path, recipe_digest
from src.generation.renderer import Renderer, build_renderer, split_sizes
from src.paths import CONFIG_DIR
from src.utils.pylogger import RankedLogger
from src.utils.utils import user_errors

log = RankedLogger(__name__)


def generate_dataset(cfg: DictConfig) -> Path:
    """Write the dataset `cfg` describes (or this run's shard of it); returns its folder.

    Batches are rendered into part files (`src/generation/parts.py`): all of them, or shard
    `dataset.shard` of `dataset.num_shards`, by `dataset.workers` processes, skipping parts a
    previous run finished. The run that finds every part present joins them into the dataset.
    Refuses to overwrite an existing dataset unless `dataset.overwrite=true`.
    """
    ds = cfg.dataset
    workers = int(ds.get("workers") or 1)
    threads = worker_threads(workers, ds.get("threads"))
    torch.set_num_threads(threads)
    renderer = build_renderer(cfg)
    out = dataset_path(cfg)
    overwrite = bool(ds.overwrite)
    if out.exists() and not overwrite:
        raise DatasetExistsError(
            f"{out} already exists; not overwriting it (pass dataset.overwrite=true to replace it)"
        )
    sizes = split_sizes(int(ds.size), ds.splits)
    seed = int(ds.seed)
    units = plan_units(sizes, int(ds.batch_size))
    num_shards = int(ds.get("num_shards") or 1)
    shard = ds.get("shard")
    mine = shard_units(units, num_shards, None if shard is None else int(shard))
    assemble_only = bool(ds.get("assemble_only"))
    idc = cfg.identifiability
    ident = None
    if idc.enabled:
        ident = identifiability(
            renderer, seed, int(idc.base_points), float(idc.min_z), int(idc.probe_records)
        )
        report_identifiability(ident)
    store = PartStore(out, parts_manifest(cfg, renderer, sizes, out))
    if assemble_only:
        if not store.dir.is_dir():
            raise DatasetNotFoundError(
                f"{store.dir}: no parts to assemble for {out.name} (dataset.assemble_only=true "
                f"joins the parts that shards wrote; run the shards first)"
            )
        store.check()
    else:
        store.open()
        started = time.perf_counter()
        todo = store.missing(mine)
        where = "" if shard is None else f"shard {int(shard)} of {num_shards}: "
        if len(todo) < len(mine):
            log.info(
                f"{where}resuming: {len(mine) - len(todo)} of {len(mine)} batches already in "
                f"{store.dir}"
            )
        totals = {s: sum(u.size for u in todo if u.split == s) for s in sizes}
        maker = BatchMaker(renderer, store, sizes, seed, bool(ds.store_audio))
        with GenerationProgress(totals, log_every=float(ds.get("log_every") or 0)) as progress:
            render_units(
                maker,
                todo,
                workers=workers,
                threads=threads,
                gen=render_config(cfg),
                on_done=progress.advance,
            )
        elapsed = time.perf_counter() - started
        made = sum(totals.values())
        log.info(
            f"{where}rendered {made:,} records in {elapsed:.2f} s "
            f"({made / max(elapsed, 1e-9):,.0f} records/s, {workers} worker(s))"
        )
    missing = store.missing(units)
    if missing:
        if assemble_only:
            raise DataError(
                f"{store.dir}: {len(missing)} of {len(units)} batches are missing (first: "
                f"{missing[0].stem}); run the shards that own them "
                f"({missing_shards(units, missing, num_shards)} of num_shards={num_shards}) first"
            )
        log.info(
            f"{len(units) - len(missing)} of {len(units)} batches done; waiting for shard(s) "
            f"{missing_shards(units, missing, num_shards)} of {num_shards}. The run that "
            f"finishes the last batch assembles {out}"
        )
        return out
    sharded = shard is not None and not assemble_only  # others may finish at the same time
    return assemble(cfg, renderer, store, units, sizes, out, ident, sharded)


def missing_shards(units: list[Unit], missing: list[Unit], num_shards: int) -> list[int]:
    pos = {u: i for i, u in enumerate(units)}
    return sorted({owner(pos[u], len(units), num_shards) for u in missing})


def parts_manifest(cfg: DictConfig, renderer: Renderer, sizes: dict, out: Path) -> dict:
    """What ties part files to their recipe (the digest covers the rest of the config)."""
    ds, imager = cfg.dataset, renderer.imager
    return {
        "dataset_name": out.name,
        "recipe_digest": recipe_digest(cfg),
        "generator_version": GENERATOR_VERSION,
        "seed": int(ds.seed),
        "split_sizes": dict(sizes),
        "batch_size": int(ds.batch_size),
        "record_bytes": record_bytes(
            CURRENT_VERSION,
            imager.height,
            imager.width,
            len(imager.channel_labels),
            len(renderer.varying),
        ),
        "audio_samples": renderer.n_samples if ds.store_audio else None,
    }


def assemble(
    cfg: DictConfig,
    renderer: Renderer,
    store: PartStore,
    units: list[Unit],
    sizes: dict,
    out: Path,
    ident: list | None,
    sharded: bool = False,
) -> Path:
    """Join every part, in order, into the dataset folder (atomically), then drop the parts.
    Shards that finish together agree through a file lock; where the file system has none,
    a shard leaves the assembly to an unsharded or `dataset.assemble_only=true` run."""
    started = time.perf_counter()
    with store.lock() as acquired:
        if acquired is None and sharded:
            log.warning(
                f"{store.dir}: this file system has no file locks, so shards cannot agree on "
                f"who assembles; once all are done, run the same command with "
                f"dataset.assemble_only=true"
            )
            return out
        if acquired is False:
            log.info(f"another process is assembling (or has assembled) {out}; leaving it there")
            return out
        if store.missing(units):  # another run assembled them just before this one
            return out
        imager = renderer.imager
        with VIMHWriter(
            out,
            height=imager.height,
            width=imager.width,
            channels=len(imager.channel_labels),
            params=[p.spec for p in renderer.varying],
            split_sizes=sizes,
            audio_samples=renderer.n_samples if cfg.dataset.store_audio else None,
            overwrite=bool(cfg.dataset.overwrite),
        ) as writer:
            store.assemble(writer, units)
            writer.finish(dataset_info(cfg, renderer, sizes, out, ident))
        store.remove()
    total = sum(sizes.values())
    log.info(
        f"Wrote {total:,} records ({', '.join(f'{k} {v:,}' for k, v in sizes.items())}) to "
        f"{out} (assembled from {len(units)} parts in {time.perf_counter() - started:.2f} s)"
    )
    return out


def dataset_info(
    cfg: DictConfig, renderer: Renderer, sizes: dict, out: Path, ident: list | None
) -> dict:
    """The dataset's JSON: the format's keys, then the recipe, sampling and checks."""
    ds, imager = cfg.dataset, renderer.imager
    store_audio = bool(ds.store_audio)
    return build_info(
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
            "seed": int(ds.seed),
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
            "audio": audio_entry(store_audio, sizes, renderer.n_samples),
            "identifiability": ident,
        },
    )


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="generate")
def main(cfg: DictConfig) -> str:
    with user_errors():
        return str(generate_dataset(cfg))


if __name__ == "__main__":
    main()
