"""Predict the parameters behind your own recordings: `python src/predict.py ckpt_path=...
audio=<file or folder>`.

Each file is read (soundfile), mixed to mono, resampled to the dataset's rate and cut or
padded to its note length (`src/audio/io.py`), then imaged by the dataset's own
imager rebuilt from its JSON through the renderer generation uses, normalised with the
checkpoint's statistics, and passed through the model. The run folder gets predictions.csv
(every head in natural units, and its class), and per file the note as the model heard it,
its resynthesis with the dataset's synth and a comparison figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from src.audio.io import audio_files, load_notes, write_wav
from src.data.provision import build_datamodule
from src.errors import ConfigError, DataError
from src.evaluation.report import comparison_figure, csv_text, write_text
from src.generation.rebuild import renderer_from_info
from src.models.tasks import datamodule_state, module_from_checkpoint, read_checkpoint
from src.paths import CONFIG_DIR
from src.utils.pylogger import RankedLogger
from src.utils.utils import extras, task_wrapper, user_errors

log = RankedLogger(__name__)


def check_pairing(model, datamodule, ckpt_path: str) -> None:
    """The checkpoint must have been trained on data like the dataset that will image notes."""
    if not hasattr(model, "specs"):
        raise ConfigError(
            f"checkpoint {ckpt_path} holds a {type(model).__name__}, which has no parameters to "
            f"estimate; evaluate it with src/eval.py (for sequence models: data=wav_dir "
            f"data.path=<audio> callbacks=eval_sequence)"
        )
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
def predict_notes(model, datamodule, renderer, notes: torch.Tensor, batch_size: int) -> dict:
    """{head: (values, classes)} for (N, n_samples) notes, imaged as generation images them."""
    out: dict[str, list] = {}
    for start in range(0, len(notes), batch_size):
        audio = notes[start : start + batch_size]
        if datamodule.representation == "audio":
            x = audio[:, None, :]
        else:
            x = datamodule.normalize_images(renderer.renderer.image(audio))
        for name, (v, c) in model.decode(model(x)).items():
            out.setdefault(name, []).append((v, c))
    return {
        name: (torch.cat([v for v, _ in parts]).double(), torch.cat([c for _, c in parts]))
        for name, parts in out.items()
    }


@task_wrapper
def predict(cfg: DictConfig) -> tuple[dict, dict]:
    """Predict every head for each audio file. Returns ({}, objects) with the predictions."""
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    ckpt = read_checkpoint(cfg.ckpt_path)
    model = module_from_checkpoint(ckpt)
    datamodule = build_datamodule(cfg.data, cfg.paths.data_dir)
    check_pairing(model, datamodule, cfg.ckpt_path)
    renderer = renderer_from_info(datamodule.info)
    datamodule.load_state_dict(datamodule_state(ckpt, datamodule))
    files = audio_files(cfg.audio)
    log.info(f"Predicting {len(files)} file(s) with {cfg.ckpt_path}")
    try:
        notes, facts = load_notes(
            files, renderer.sample_rate, renderer.n_samples, str(cfg.onset), float(cfg.onset_db)
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e
    preds = predict_notes(model, datamodule, renderer, notes, int(cfg.batch_size))

    out = Path(cfg.paths.output_dir)
    specs = model.specs
    heads = [s.name for s in specs]
    names = [f"{i:03d}_{Path(f['file']).stem}" for i, f in enumerate(facts)]
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
        ]
        for i, f in enumerate(facts)
    ]
    header = ["index", "file", "file_rate", "file_seconds", "onset_s"]
    header += [x for h in heads for x in (h, f"{h}_class")]
    written = [write_text(out / "predictions.csv", csv_text(header, rows))]
    about = {
        "checkpoint": str(cfg.ckpt_path),
        "dataset": str(datamodule.data_dir),
        "sample_rate": renderer.sample_rate,
        "n_samples": renderer.n_samples,
        "onset": str(cfg.onset),
        "heads": {s.name: {"unit": s.unit, "min": s.min, "max": s.max} for s in specs},
    }
    written.append(write_text(out / "predictions.json", json.dumps(about, indent=2)))

    resynth = None
    if cfg.resynthesize:
        generator = torch.Generator().manual_seed(int(cfg.seed))
        resynth = renderer.render_values({h: preds[h][0].numpy() for h in heads}, generator)
    for i, name in enumerate(names):
        written.append(write_wav(out / f"{name}_input.wav", notes[i], renderer.sample_rate))
        if resynth is None:
            continue
        written.append(write_wav(out / f"{name}_resynth.wav", resynth[i], renderer.sample_rate))
        if cfg.figures:
            table = [
                [h + (f" ({s.unit})" if s.unit else ""), f"{float(preds[h][0][i]):.4g}"]
                for h, s in zip(heads, specs)
            ]
            written.append(
                comparison_figure(
                    out / f"{name}.png",
                    notes[i],
                    resynth[i],
                    renderer.imager,
                    title=f"{shown[i]} (onset {facts[i]['onset_s']:.3f} s)",
                    table=table,
                    col_labels=["parameter", "predicted"],
                    labels=("input, as the model heard it", "resynthesis of the prediction"),
                )
            )
    log.info(f"Wrote {len(written)} files to {out}")
    table = {h: preds[h][0].numpy() for h in heads}
    return {}, {
        "cfg": cfg,
        "model": model,
        "datamodule": datamodule,
        "files": facts,
        "values": table,
        "classes": {h: preds[h][1].numpy() for h in heads},
        "notes": notes,
        "resynthesis": resynth,
    }


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict.yaml")
def main(cfg: DictConfig) -> None:
    with user_errors():
        extras(cfg)
        predict(cfg)


if __name__ == "__main__":
    main()
