"""Predict the parameters behind your own recordings: `python src/predict.py ckpt_path=...
audio=<file or folder>`.

Each file is read (soundfile), mixed to mono, resampled to the dataset's rate and cut or
padded to its note length (`src/audio/io.py`; `onset=each`: one note per onset, else one per
file, with a warning for the seconds of sound left out), then imaged by the dataset's own
imager rebuilt from its JSON through the renderer generation uses, normalised with the
checkpoint's statistics, and passed through the model. The run folder gets predictions.csv
(every head in natural units, and its class; for a nominal head of recordings also the class
name and its probability), and per note the audio as the model heard it, its resynthesis with
the dataset's synth and a comparison figure (datasets converted from recordings have no synth:
no resynthesis). The first notes' predictions are also logged, class names and all. A file
that cannot be used costs only itself: the others are predicted, then it is named with its
reason (also in skipped.csv) and the exit status is 1.

`onnx_path=<model.onnx>` instead of `ckpt_path` runs a model exported by `src/export.py` with
ONNX Runtime (its sidecar names the heads, classes and input; normalisation, and for a
waveform graph the imaging, happen inside the graph): the same CSV, values within float
rounding (docs/deploy.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from src.audio.io import audio_files, read_notes, unusable, write_wav
from src.data.provision import build_datamodule
from src.deploy.graphs import WAVEFORM
from src.deploy.runtime import ExportedEstimator
from src.errors import ConfigError, DataError
from src.evaluation.report import comparison_figure, csv_text, write_text
from src.generation.rebuild import imager_from_info, renderer_from_info
from src.imaging import SpectrogramImager
from src.matching.refine import refine_notes, refined_row
from src.models.tasks import datamodule_state, module_from_checkpoint, read_checkpoint
from src.paths import CONFIG_DIR
from src.utils.pylogger import RankedLogger
from src.utils.utils import extras, task_wrapper, user_errors

log = RankedLogger(__name__)

SHOWN = 50  # files whose predictions are also logged


def check_pairing(model, datamodule, ckpt_path: str) -> None:
    """The checkpoint must have been trained on data like the dataset that will image notes."""
    if tuple(model.specs) != tuple(datamodule.heads):
        raise DataError(
            f"checkpoint {ckpt_path} predicts {[s.to_dict() for s in model.specs]} but dataset "
            f"{datamodule.data_dir} labels {[s.to_dict() for s in datamodule.heads]}; pass the "
            f"data config it was trained with (data=...)"
        )
    kind = model.hparams.get("input_kind") or "image"
    if kind != datamodule.representation:
        raise ConfigError(
            f"checkpoint {ckpt_path} takes {kind} input but data serves "
            f"{datamodule.representation}; pass the data config it was trained with"
        )


@torch.no_grad()
def predict_notes(model, datamodule, imager, notes: torch.Tensor, batch_size: int) -> dict:
    """{head: (values, classes, probability of the class)} for (N, n_samples) notes, imaged
    as the dataset's notes were; the probability is NaN for heads that give none (ordinal,
    regression)."""
    out: dict[str, list] = {}
    for start in range(0, len(notes), batch_size):
        audio = notes[start : start + batch_size]
        if datamodule.representation == "audio":
            x = audio[:, None, :]
        else:
            with torch.inference_mode():
                images = imager(audio)
            x = datamodule.normalize_images(images)
        raw = model(x)
        for name, (v, c) in model.decode(raw).items():
            probs = model.heads[name].class_probabilities(raw[name])
            if probs is not None:
                p = probs.gather(1, c[:, None])[:, 0]
            else:
                p = torch.full(c.shape, float("nan"))
            out.setdefault(name, []).append((v, c, p))
    return {
        name: (
            torch.cat([v for v, _, _ in parts]).double(),
            torch.cat([c for _, c, _ in parts]),
            torch.cat([p for _, _, p in parts]),
        )
        for name, parts in out.items()
    }


def recorded_imaging(info) -> tuple[SpectrogramImager, int, int, str]:
    """(imager, sample rate, note samples, onset) of a dataset converted from recordings (it
    has no synth to rebuild; `src/convert.py` records how it cut its files)."""
    imager = imager_from_info(info)
    made = info.raw.get("dataset_config") or {}
    return imager, imager.sample_rate, imager.n_samples, str(made.get("onset") or "start")


def class_names(ckpt: dict, datamodule, ckpt_path: str) -> dict[str, tuple[str, ...]]:
    """The nominal heads' class names: the checkpoint's (they name its outputs), which must be
    the dataset's."""
    saved = datamodule_state(ckpt, datamodule).get("class_names")
    names = {k: list(v) for k, v in datamodule.class_names.items()}
    if saved is not None and saved != names:
        raise DataError(
            f"checkpoint {ckpt_path} names its classes {saved} but dataset "
            f"{datamodule.data_dir} names them {names}; pass the data config it was trained with"
        )
    return {k: tuple(v) for k, v in names.items()}


def exported_names(model: ExportedEstimator, datamodule) -> dict[str, tuple[str, ...]]:
    """`class_names` for an exported model: its sidecar's, which must be the dataset's."""
    names = {k: tuple(v) for k, v in datamodule.class_names.items()}
    if model.class_names != names:
        raise DataError(
            f"{model.path} names its classes {model.class_names} but dataset "
            f"{datamodule.data_dir} names them {names}; pass the data config it was trained with"
        )
    return names


def check_exported_imaging(model: ExportedEstimator, imager, rate: int, n_samples: int) -> None:
    """An exported graph hears notes as the dataset's imager made its images."""
    if (model.sample_rate, model.n_samples) != (rate, n_samples) and model.input == WAVEFORM:
        raise DataError(
            f"{model.path} takes notes of {model.n_samples} samples at {model.sample_rate} Hz "
            f"but the dataset's are {n_samples} at {rate} Hz; pass the data config it was "
            f"trained with"
        )
    if model.imaging is not None and model.model_input == "image":
        made = {k: model.imaging.get(k) for k in imager.config()}
        if made != imager.config():
            raise DataError(
                f"{model.path} was exported for images made with {made}, the dataset's are made "
                f"with {imager.config()}; pass the data config it was trained with"
            )


def load_model(cfg: DictConfig):
    """(model, checkpoint or None, where): the checkpoint's module, or an exported model."""
    if cfg.get("onnx_path") and cfg.get("ckpt_path"):
        raise ConfigError(
            "give ckpt_path (a checkpoint) or onnx_path (an exported model), not both"
        )
    if cfg.get("onnx_path"):
        return ExportedEstimator(cfg.onnx_path), None, str(cfg.onnx_path)
    if not cfg.get("ckpt_path"):
        raise ConfigError("predict needs ckpt_path=<checkpoint> or onnx_path=<exported .onnx>")
    ckpt = read_checkpoint(cfg.ckpt_path)
    model = module_from_checkpoint(ckpt, cfg.ckpt_path)
    if not hasattr(model, "specs"):  # a sequence model or a codec: it has no heads
        raise ConfigError(
            f"checkpoint {cfg.ckpt_path} holds a {type(model).__name__}, which has no "
            f"parameters to estimate; evaluate it with src/eval.py (sequence models on "
            f"recordings: data=wav_dir data.path=<audio> callbacks=eval_sequence; codecs: "
            f"docs/codec.md)"
        )
    return model, ckpt, str(cfg.ckpt_path)


@task_wrapper
def predict(cfg: DictConfig) -> tuple[dict, dict]:
    """Predict every head for each audio file. Returns ({}, objects) with the predictions."""
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    model, ckpt, source = load_model(cfg)
    exported = ckpt is None
    datamodule = build_datamodule(cfg.data, cfg.paths.data_dir)
    check_pairing(model, datamodule, source)
    if exported:
        names = exported_names(model, datamodule)
    else:
        names = class_names(ckpt, datamodule, cfg.ckpt_path)
    if "synth_config" in datamodule.info.raw:  # generated: its synth resynthesizes predictions
        renderer = renderer_from_info(datamodule.info)
        imager, rate, n_samples, made_onset = (
            renderer.imager,
            renderer.sample_rate,
            renderer.n_samples,
            "start",
        )
    else:  # converted from recordings: nothing to resynthesize with
        renderer = None
        imager, rate, n_samples, made_onset = recorded_imaging(datamodule.info)
    onset = str(cfg.onset or made_onset)
    if onset != made_onset:
        log.warning(f"onset={onset}, but the dataset's notes start at '{made_onset}'")
    if exported:
        check_exported_imaging(model, imager, rate, n_samples)
    else:
        datamodule.load_state_dict(datamodule_state(ckpt, datamodule))
    files = audio_files(cfg.audio)
    log.info(f"Predicting {len(files)} file(s) with {source}")
    try:
        notes, facts, bad = read_notes(files, rate, n_samples, onset, float(cfg.onset_db))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if not facts:
        raise DataError(unusable(bad, len(files)))
    if exported:
        preds = model.predict(notes, imager, int(cfg.batch_size))
    else:
        preds = predict_notes(model, datamodule, imager, notes, int(cfg.batch_size))

    out = Path(cfg.paths.output_dir)
    specs = model.specs
    heads = [s.name for s in specs]
    refined, refined_audio = None, None
    if cfg.get("refine"):
        if renderer is None:
            raise ConfigError(
                f"refine=true needs the synth of the dataset; {datamodule.data_dir} was "
                f"converted from recordings and has none"
            )
        refined, refined_audio = refine_notes(
            instantiate(cfg.refiner),
            renderer.renderer,
            notes,
            {h: preds[h][0].numpy() for h in heads},
        )
    stems = [f"{i:03d}_{Path(f['file']).stem}" for i, f in enumerate(facts)]
    named = [h for h in heads if h in names]
    root = Path(cfg.audio) if Path(cfg.audio).is_dir() else Path(cfg.audio).parent
    shown = [str(Path(f["file"]).relative_to(root)) for f in facts]
    rows = [
        [
            i,
            f["file"],
            f["file_rate"],
            f["file_seconds"],
            f["onset_s"],
            *(x for h in heads for x in (float(preds[h][0][i]), int(preds[h][1][i]))),
            *(x for h in named for x in (names[h][int(preds[h][1][i])], float(preds[h][2][i]))),
            *(refined_row(refined, heads, i) if refined is not None else ()),
        ]
        for i, f in enumerate(facts)
    ]
    header = ["index", "file", "file_rate", "file_seconds", "onset_s"]
    header += [x for h in heads for x in (h, f"{h}_class")]
    header += [x for h in named for x in (f"{h}_name", f"{h}_prob")]
    if refined is not None:
        header += [
            *(f"{h}_refined" for h in heads),
            "refined_onset_s",
            "refine_loss_start",
            "refine_loss_end",
        ]
    written = [write_text(out / "predictions.csv", csv_text(header, rows))]
    for i in range(min(len(facts), SHOWN)):
        said = ", ".join(
            f"{h}={names[h][int(preds[h][1][i])]} ({float(preds[h][2][i]):.2f})"
            if h in names
            else f"{h}={float(preds[h][0][i]):.4g}"
            for h in heads
        )
        log.info(f"{shown[i]}: {said}")
    if len(facts) > SHOWN:
        log.info(f"... and {len(facts) - SHOWN} more files: see predictions.csv")
    about = {
        "checkpoint": None if exported else str(cfg.ckpt_path),
        "exported": str(cfg.onnx_path) if exported else None,
        "dataset": str(datamodule.data_dir),
        "sample_rate": rate,
        "n_samples": n_samples,
        "onset": onset,
        "heads": {s.name: {"unit": s.unit, "min": s.min, "max": s.max} for s in specs},
        "class_names": {h: list(v) for h, v in names.items()},
    }
    written.append(write_text(out / "predictions.json", json.dumps(about, indent=2)))

    resynth = None
    if cfg.resynthesize and renderer is None:
        log.info("The dataset was converted from recordings: no synth to resynthesize with")
    elif cfg.resynthesize:
        generator = torch.Generator().manual_seed(int(cfg.seed))
        resynth = renderer.render_values({h: preds[h][0].numpy() for h in heads}, generator)
    for i, name in enumerate(stems):
        written.append(write_wav(out / f"{name}_input.wav", notes[i], rate))
        if resynth is None:
            continue
        written.append(write_wav(out / f"{name}_resynth.wav", resynth[i], rate))
        if refined_audio is not None:
            written.append(write_wav(out / f"{name}_refined.wav", refined_audio[i], rate))
        if cfg.figures:
            table = [
                [
                    h + (f" ({s.unit})" if s.unit else ""),
                    f"{float(preds[h][0][i]):.4g}",
                    *([f"{refined.values[h][i]:.4g}"] if refined is not None else []),
                ]
                for h, s in zip(heads, specs)
            ]
            written.append(
                comparison_figure(
                    out / f"{name}.png",
                    notes[i],
                    resynth[i],
                    imager,
                    title=f"{shown[i]} (onset {facts[i]['onset_s']:.3f} s)",
                    table=table,
                    col_labels=["parameter", "predicted", *(["refined"] if refined else [])],
                    labels=(
                        "input, as the model heard it",
                        "resynthesis of the prediction",
                        "resynthesis of the refined estimate",
                    ),
                    more=(refined_audio[i],) if refined_audio is not None else (),
                )
            )
    log.info(f"Wrote {len(written)} files to {out}")
    if bad:  # every usable file is predicted first; the exit status still says what failed
        write_text(out / "skipped.csv", csv_text(["file", "reason"], [list(b) for b in bad]))
        raise DataError(f"{unusable(bad, len(files))}; the others are in {out}/predictions.csv")
    table = {h: preds[h][0].numpy() for h in heads}
    if refined is not None:
        log.info(
            f"Refined {len(facts)} note(s) by {refined.renders_per_note:.0f} synth renders each "
            f"in {refined.seconds:.1f} s; spectral loss {refined.loss_start.mean():.3f} -> "
            f"{refined.loss_end.mean():.3f} (mean)"
        )
    return {}, {
        "cfg": cfg,
        "model": model,
        "datamodule": datamodule,
        "files": facts,
        "values": table,
        "classes": {h: preds[h][1].numpy() for h in heads},
        "names": {h: [names[h][int(c)] for c in preds[h][1]] for h in named},
        "notes": notes,
        "resynthesis": resynth,
        "refined": refined,
        "refined_audio": refined_audio,
    }


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict.yaml")
def main(cfg: DictConfig) -> None:
    with user_errors():
        extras(cfg)
        predict(cfg)


if __name__ == "__main__":
    main()
