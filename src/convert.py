"""Turn a labelled collection of recordings into a VIMH dataset: `python convert_audio.py
source=folder source.path=<root>` (or `source=manifest`, `source=speech_commands`).

The pipeline beside generation: the source (`src/conversion/sources.py`) lists files and
labels, the splits come from the collection or a seeded stratified (and group-aware) draw
(`splits.py`), files are decoded and imaged chunk by chunk into part files, in worker
processes (`decode.py`), and the atomic writer joins the parts into the dataset with the same
spectrogram configs, dB range and record layout as synthetic data. docs/own_data.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections import Counter
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from src.conversion.decode import ChunkMaker, ChunkResult, Decoding, decode_chunks, plan_chunks
from src.conversion.sources import Collection, collect
from src.conversion.splits import assign, groups_across, record_order
from src.data.vimh import VIMHWriter, build_info, dataset_folder_name, dataset_lock
from src.data.vimh.classes import nearest_codes
from src.data.vimh.format import CURRENT_VERSION, audio_entry, record_bytes
from src.errors import ConfigError, DataError, DatasetExistsError
from src.generation.parallel import worker_threads
from src.generation.parts import PartStore
from src.generation.progress import GenerationProgress
from src.generation.recipe import _canonical
from src.paths import CONFIG_DIR
from src.utils.pylogger import RankedLogger
from src.utils.utils import user_errors

log = RankedLogger(__name__)

CONVERTER_VERSION = 1  # bump when the same config would make other bytes
NOT_RECIPE = ("out_dir", "name", "overwrite", "threads", "workers", "log_every", "on_bad_file")
BAD_FILE_POLICIES = ("skip", "error")
SHOWN = 20  # bad files named in the log and the JSON (all are in skipped.csv)


def conversion_digest(cfg: DictConfig, col: Collection) -> str:
    """8 hex digits over what shapes the records: the source config (its path resolved), the
    spectrogram and the dataset options. The recordings' contents are not hashed."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    content = {
        "converter_version": CONVERTER_VERSION,
        "source": {
            **OmegaConf.to_container(cfg.source, resolve=True),
            "root": str(col.root.resolve()),
        },
        "spectrogram": OmegaConf.to_container(cfg.spectrogram, resolve=True),
        "dataset": {k: v for k, v in dataset.items() if k not in NOT_RECIPE},
    }
    text = json.dumps(_canonical(content), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def label_codes(col: Collection) -> tuple[np.ndarray, dict]:
    """(N, P) uint8 codes of every file's labels, and each numeric head's quantisation: the
    largest |decoded - true| and how many files' class it changes."""
    cols, quant = [], {}
    for lb in col.labels:
        codes = nearest_codes(lb.spec, lb.values)
        back = lb.spec.decode(codes)
        changed = lb.spec.class_index(back) != lb.spec.class_index(lb.values)
        if lb.categorical and changed.any():  # cannot happen for <= 256 classes; stay sure
            raise AssertionError(f"class codes of '{lb.spec.name}' do not round-trip")
        if not lb.categorical:
            quant[lb.spec.name] = {
                "max_abs_error": float(np.abs(back - lb.values).max()),
                "class_changes": int(changed.sum()),
            }
            if changed.any():
                log.warning(
                    f"label '{lb.spec.name}': 8-bit codes move {int(changed.sum())} file(s) into "
                    f"a neighbouring class (values close to a class boundary); a step of at "
                    f"least {lb.spec.extent / 255:.4g} keeps classes exact for values on its grid"
                )
        cols.append(codes)
    return np.stack(cols, axis=1), quant


def strata_of(col: Collection) -> np.ndarray:
    """What splits are stratified by: the first categorical label, else the first label's class."""
    lb = next((lb for lb in col.labels if lb.categorical), col.labels[0])
    return lb.spec.class_index(lb.values)


def report_left_out(col: Collection) -> None:
    """Say what the source left out (also in the JSON's `conversion` section)."""
    f = col.facts
    if f.get("excluded_folders"):
        log.info(f"Not classes (source.exclude): {', '.join(f['excluded_folders'])}")
    said = {
        "unused_class_folders": "class folders left out by source.classes",
        "audio_files_outside_class_folders": "audio files at the root, in no class folder",
        "non_audio_files_ignored": "files in class folders that are not audio",
        "files_not_matching_group_pattern": "files whose name source.group_pattern does not "
        "match (each its own group)",
    }
    for key, what in said.items():
        if f.get(key):
            n = len(f[key]) if isinstance(f[key], list) else f[key]
            log.warning(f"{n} {what}")
    for split, n in (f.get("split_list_entries_not_converted") or {}).items():
        if n:
            log.info(f"{n} files of the {split} list are not in the converted classes")


def existing_datasets(out_dir: Path, name: str | None, synth: str) -> list[Path]:
    if name:
        return [out_dir / name] if (out_dir / name).exists() else []
    return sorted(out_dir.glob(f"vimh-*_{synth}_*p")) if out_dir.is_dir() else []


def convert_dataset(cfg: DictConfig) -> Path:
    """Write the dataset `cfg` describes; returns its folder."""
    ds = cfg.dataset
    policy = str(ds.on_bad_file)
    if policy not in BAD_FILE_POLICIES:
        raise ConfigError(f"dataset.on_bad_file must be one of {BAD_FILE_POLICIES}, got {policy!r}")
    workers = int(ds.get("workers") or 1)
    threads = worker_threads(workers, ds.get("threads"))
    torch.set_num_threads(threads)
    col = collect(OmegaConf.to_container(cfg.source, resolve=True))
    report_left_out(col)
    decoding = Decoding(
        spectrogram=OmegaConf.to_container(cfg.spectrogram, resolve=True),
        sample_rate=int(ds.sample_rate),
        n_samples=round(float(ds.sample_rate) * float(ds.duration)),
        onset=str(ds.onset),
        onset_db=float(ds.onset_db),
        store_audio=bool(ds.store_audio),
    )
    if decoding.onset not in ("start", "detect"):
        raise ConfigError(f"dataset.onset must be start or detect, got {decoding.onset!r}")
    try:
        imager = decoding.imager()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"spectrogram: {e}") from e
    codes, quant = label_codes(col)
    seed = int(ds.seed)
    split, how = assign(strata_of(col), col.groups, col.given, ds.splits, seed)
    leaks = groups_across(split, col.groups)
    if leaks:
        log.warning(
            f"{len(leaks)} group(s) have files in more than one of the given splits (e.g. "
            f"{leaks[0]!r}); the collection's splits are kept as given"
        )
    if col.given is not None and not (split == "val").any():
        log.warning("the collection gives no val files: training carves val out of train")
    digest = conversion_digest(cfg, col)
    synth = f"{col.name}-{digest}"
    out_dir = Path(str(ds.out_dir))
    found = existing_datasets(out_dir, ds.get("name"), synth)
    if found and not ds.overwrite:
        what = "exists" if ds.get("name") else "already holds this conversion"
        raise DatasetExistsError(
            f"{found[0]} {what}; not overwriting it (pass dataset.overwrite=true to replace it)"
        )
    n_params = len(col.labels)
    manifest = {
        "conversion": synth,
        "record_bytes": record_bytes(
            CURRENT_VERSION, imager.height, imager.width, len(imager.channel_labels), n_params
        ),
        "audio_samples": decoding.n_samples if decoding.store_audio else None,
    }
    staging = out_dir / synth
    with dataset_lock(staging):  # one conversion of this config at a time
        store = PartStore(staging, manifest)
        if store.dir.exists():
            log.warning(f"Removing {store.dir}, left by an interrupted conversion")
            store.remove()
        store.open()
        try:
            results = decode(col, decoding, store, codes, record_order(split, seed), cfg, threads)
            out = assemble(cfg, col, imager, store, results, quant, how, leaks, synth)
        finally:
            store.remove()
    return out


def decode(col, decoding, store, codes, order, cfg, threads) -> list[ChunkResult]:
    ds = cfg.dataset
    chunks = plan_chunks(order, int(ds.batch_size))
    maker = ChunkMaker(decoding, store, [str(col.path(i)) for i in range(len(col))], codes)
    totals = {s: len(rows) for s, rows in order.items()}
    started = time.perf_counter()
    log_every = float(ds.get("log_every") or 0)
    with GenerationProgress(totals, log_every=log_every, verb="decoded") as progress:
        results = decode_chunks(
            maker,
            chunks,
            workers=int(ds.get("workers") or 1),
            threads=threads,
            on_done=lambda r: progress.advance(r.split, len(r.kept) + len(r.bad)),
        )
    n = sum(totals.values())
    elapsed = time.perf_counter() - started
    log.info(f"Decoded {n:,} files in {elapsed:.2f} s ({n / max(elapsed, 1e-9):,.0f} files/s)")
    bad = [(col.files[row], why) for r in results for row, why in r.bad]
    if bad:
        shown = "; ".join(f"{f}: {why}" for f, why in bad[:SHOWN])
        more = f" (and {len(bad) - SHOWN} more)" if len(bad) > SHOWN else ""
        if str(ds.on_bad_file) == "error":
            raise DataError(
                f"{len(bad)} of {n} files cannot be used (dataset.on_bad_file=error): {shown}{more}"
            )
        log.warning(f"Skipped {len(bad)} of {n} files that cannot be used: {shown}{more}")
    if not any(r.kept for r in results):
        raise DataError(f"{col.root}: none of the {n} files could be used ({bad[0][1]}, ...)")
    return results


def assemble(cfg, col, imager, store, results, quant, how, leaks, synth) -> Path:
    """Join the parts into the dataset folder, with its JSON and side files."""
    ds = cfg.dataset
    sizes = {}
    for r in results:
        sizes[r.split] = sizes.get(r.split, 0) + len(r.kept)
    for s in ("train", "test"):
        if not sizes.get(s):
            raise DataError(
                f"every file of the {s} split was skipped; a dataset needs train and test"
            )
    sizes = {s: n for s, n in sizes.items() if n}
    total = sum(sizes.values())
    channels = len(imager.channel_labels)
    name = ds.get("name") or dataset_folder_name(
        imager.height,
        imager.width,
        channels,
        int(ds.sample_rate),
        float(ds.duration),
        total,
        synth,
        len(col.labels),
    )
    out = Path(str(ds.out_dir)) / name
    started = time.perf_counter()
    with VIMHWriter(
        out,
        height=imager.height,
        width=imager.width,
        channels=channels,
        params=[lb.spec for lb in col.labels],
        split_sizes=sizes,
        audio_samples=imager.n_samples if ds.store_audio else None,
        overwrite=bool(ds.overwrite),
    ) as writer:
        store.assemble(writer, [r.unit for r in results if r.split in sizes])
        writer.add_file("sources.csv", sources_csv(col, results))
        bad = [(col.files[row], r.split, why) for r in results for row, why in r.bad]
        if bad:
            writer.add_file("skipped.csv", table_csv(["file", "split", "reason"], bad))
        facts = conversion_facts(col, results, how, leaks, quant, sizes, bad, float(ds.duration))
        writer.finish(dataset_info(cfg, col, imager, sizes, out, facts, synth))
    log.info(
        f"Wrote {total:,} records ({', '.join(f'{k} {v:,}' for k, v in sizes.items())}) to {out} "
        f"in {time.perf_counter() - started:.2f} s; splits {how}"
    )
    for lb in col.labels:
        if lb.categorical:
            counts = Counter(int(v) for v in lb.values[[i for r in results for i in r.kept]])
            per = ", ".join(f"{n} {counts.get(k, 0)}" for k, n in enumerate(lb.names))
            log.info(f"{lb.spec.name}: {len(lb.names)} classes: {per}")
    return out


def table_csv(header, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def sources_csv(col: Collection, results: list[ChunkResult]) -> str:
    """One row per record: its split and index there, its file, labels, group and facts."""
    heads = [lb.spec.name for lb in col.labels]
    header = ["split", "index", "file", *heads, "group", "file_rate", "file_seconds", "onset_s"]
    rows, index = [], Counter()
    for r in results:
        for row, fact in zip(r.kept, r.facts, strict=True):
            labels = [
                lb.names[int(lb.values[row])] if lb.categorical else f"{lb.values[row]:.6g}"
                for lb in col.labels
            ]
            group = "" if col.groups is None else col.groups[row]
            rows.append([r.split, index[r.split], col.files[row], *labels, group, *fact.values()])
            index[r.split] += 1
    return table_csv(header, rows)


def conversion_facts(col, results, how, leaks, quant, sizes, bad, duration: float) -> dict:
    """What the JSON says about the conversion: counts, what was left out and why."""
    facts = [f for r in results for f in r.facts]
    heard = np.array([f["file_seconds"] - f["onset_s"] for f in facts])
    rates = Counter(f["file_rate"] for f in facts)
    counts = {}
    for lb in col.labels:
        if lb.categorical:
            counts[lb.spec.name] = {
                s: np.bincount(
                    lb.values[[i for r in results if r.split == s for i in r.kept]].astype(int),
                    minlength=len(lb.names),
                ).tolist()
                for s in sizes
            }
    return {
        "files_listed": len(col),
        "records": sum(len(r.kept) for r in results),
        "skipped": len(bad),
        "skipped_files": [{"file": f, "reason": why} for f, _, why in bad[:SHOWN]],
        "skipped_list": "skipped.csv" if bad else None,
        "sources": "sources.csv",
        "file_rates": {str(k): n for k, n in sorted(rates.items())},
        "padded": int((heard < duration - 1e-6).sum()),  # shorter than the note from the start
        "cut": int((heard > duration + 1e-6).sum()),  # longer: the rest is left out
        "split": how,
        "split_source": col.split_source,
        "groups": None if col.groups is None else len(set(col.groups.tolist())),
        "groups_across_splits": None if col.groups is None else len(leaks),
        "class_counts": counts,
        "quantisation": quant,
        **col.facts,
    }


def dataset_info(cfg, col, imager, sizes, out, facts, synth) -> dict:
    ds = cfg.dataset
    store_audio = bool(ds.store_audio)
    return build_info(
        dataset_name=out.name,
        height=imager.height,
        width=imager.width,
        channels=len(imager.channel_labels),
        channel_labels=imager.channel_labels,
        params=[lb.spec for lb in col.labels],
        fixed_parameters={},
        split_sizes=sizes,
        sample_rate=int(ds.sample_rate),
        duration=float(ds.duration),
        synth_type=f"recordings ({col.layout})",
        spectrogram_config=imager.config(),
        extra={
            "generator": "neural-spectral-modeling convert_audio.py",
            "seed": int(ds.seed),
            "recipe_digest": synth.rsplit("-", 1)[1],
            "generator_version": CONVERTER_VERSION,
            "class_names": col.class_names,
            "source": {
                "layout": col.layout,
                "name": col.name,
                "root": str(col.root.resolve()),
                "config": OmegaConf.to_container(cfg.source, resolve=True),
            },
            "dataset_config": {
                k: v
                for k, v in OmegaConf.to_container(ds, resolve=True).items()
                if k not in NOT_RECIPE
            },
            "audio": audio_entry(store_audio, sizes, imager.n_samples),
            "conversion": facts,
        },
        rounding="round",  # nearest_codes
    )


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="convert")
def main(cfg: DictConfig) -> str:
    with user_errors():
        return str(convert_dataset(cfg))


if __name__ == "__main__":
    main()
