"""The demo of a parameter-estimation checkpoint: a sound in; its image, the predicted
parameters with units and confidence, the resynthesis (and the refined one) out.

The note is read, cut and imaged exactly as `src/predict.py` does it (the dataset's imager
rebuilt from its JSON, the checkpoint's normalisation), so the page and the command line
agree on every value. Confidence is the model's own: the predicted class's probability and,
for ordered heads, the central 90% interval of its class distribution (heads that model no
distribution, ordinal and regression, show none).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from src.audio.io import ONSETS, file_notes, write_wav
from src.data.provision import build_datamodule
from src.data.vimh import VIMHDataset
from src.data.vimh.classes import is_nominal
from src.demo.core import Shown, image_png
from src.errors import ConfigError, DataError
from src.evaluation.report import comparison_figure
from src.generation.rebuild import renderer_from_info
from src.matching.refine import refine_notes
from src.models.tasks import datamodule_state
from src.predict import check_pairing, class_names, recorded_imaging

INTERVAL = (0.05, 0.95)  # the confidence interval's quantiles


def interval(spec, probs: np.ndarray) -> tuple[float, float]:
    """The class values at the `INTERVAL` quantiles of a (K,) class distribution."""
    cdf = np.cumsum(probs) / max(float(probs.sum()), 1e-12)
    lo, hi = (int(np.searchsorted(cdf, q)) for q in INTERVAL)
    k = len(probs) - 1
    return tuple(float(v) for v in spec.class_value(np.array([min(lo, k), min(hi, k)])))


class EstimationDemo:
    """Predict, resynthesize and (on request) refine one note of an uploaded sound."""

    kind = "estimation"

    def __init__(self, model, ckpt: dict, where: str, cfg, work_dir: Path) -> None:
        if not hasattr(model, "specs"):
            raise ConfigError(f"{where}: a {type(model).__name__} estimates no parameters")
        datamodule = build_datamodule(cfg.data, cfg.paths.data_dir)
        check_pairing(model, datamodule, where)
        self.names = class_names(ckpt, datamodule, where)
        datamodule.load_state_dict(datamodule_state(ckpt, datamodule))
        self.model, self.datamodule, self.where = model, datamodule, where
        self.work_dir, self.refiner_cfg = Path(work_dir), cfg.refiner
        self.seed = int(cfg.seed)
        if "synth_config" in datamodule.info.raw:
            self.renderer = renderer_from_info(datamodule.info)
            self.imager = self.renderer.imager
            self.rate, self.n_samples = self.renderer.sample_rate, self.renderer.n_samples
            made = "start"
        else:  # converted from recordings: no synth to resynthesize with
            self.renderer = None
            self.imager, self.rate, self.n_samples, made = recorded_imaging(datamodule.info)
        self.onset = str(cfg.get("onset") or made)
        if self.onset not in ONSETS:
            raise ConfigError(f"onset must be one of {ONSETS} on the page, got {self.onset!r}")
        self.onset_db = float(cfg.onset_db)
        self.n_requests = 0
        self.dataset: VIMHDataset | None = None

    @property
    def can_refine(self) -> bool:
        return self.renderer is not None

    def describe(self) -> str:
        heads = ", ".join(s.name + (f" ({s.unit})" if s.unit else "") for s in self.model.specs)
        return (
            f"**{type(self.model.net).__name__}** estimating {heads} from "
            f"`{self.datamodule.data_dir.name}` notes of {self.n_samples / self.rate:g} s at "
            f"{self.rate} Hz (onset: {self.onset})"
        )

    def test_records(self, n: int) -> list[str]:
        """Labels of the first `n` test records (their true values), for the picker."""
        dataset, split = self.test_split()
        values = dataset[split].values()[:n]
        specs = dataset.params
        return [
            f"{i}: " + ", ".join(f"{s.name}={v:.4g}" for s, v in zip(specs, row))
            for i, row in enumerate(values)
        ]

    def test_split(self) -> tuple[VIMHDataset, str]:
        """The dataset (opened, not loaded: its labels and audio are memory-mapped) and the
        name of its test split."""
        if self.dataset is None:
            self.dataset = VIMHDataset(self.datamodule.data_dir)
        return self.dataset, self.datamodule.files["test"]

    def record_sound(self, index: int) -> Path:
        """A WAV of test record `index`: its stored audio, or its labels rendered again with
        the nuisance it was generated with (`DatasetRenderer.render_batch`)."""
        dataset, split = self.test_split()
        if not 0 <= index < len(dataset[split]):
            raise DataError(f"test record {index} does not exist ({len(dataset[split])} records)")
        if dataset.audio_available:
            audio = np.asarray(dataset.audio(split)[index])
        elif self.renderer is not None:
            bs = self.renderer.batch_size
            first = index - index % bs
            values = dataset[split].values()[first : index + 1]
            varying = {s.name: values[:, j] for j, s in enumerate(dataset.params)}
            audio = self.renderer.render_batch(split, index // bs, varying)[-1].numpy()
        else:
            raise DataError(f"{dataset.root}: stores no audio and has no synth to render it")
        return write_wav(self.work_dir / "records" / f"test_{index:05d}.wav", audio, self.rate)

    @torch.no_grad()
    def outputs(self, notes: torch.Tensor):
        """(images, {head: (values, classes, probabilities or None)}) for (N, T) notes."""
        images = self.imager(notes) if self.datamodule.representation != "audio" else None
        x = notes[:, None, :] if images is None else self.datamodule.normalize_images(images)
        raw = self.model(x)
        out = {}
        for name, (v, c) in self.model.decode(raw).items():
            probs = self.model.heads[name].class_probabilities(raw[name])
            out[name] = (v.double(), c, None if probs is None else probs.double())
        return images, out

    def rows(self, out: dict, refined=None) -> list[list]:
        rows = []
        for s in self.model.specs:
            v, c, probs = float(out[s.name][0][0]), int(out[s.name][1][0]), out[s.name][2]
            shown = self.names[s.name][c] if s.name in self.names else f"{v:.4g}"
            if probs is None:
                confidence = "none (the head models no distribution)"
            else:
                p = probs[0].numpy()
                confidence = f"p={p[c]:.2f}"
                if not is_nominal(s):
                    lo, hi = interval(s, p)
                    confidence += f"; 90% in [{lo:.4g}, {hi:.4g}]"
            row = [s.name, s.unit or "", shown, confidence]
            if refined is not None:
                row.append(f"{float(refined.values[s.name][0]):.4g}")
            rows.append(row)
        return rows

    def run(self, path: Path, refine: bool = False) -> Shown:
        """Everything the page shows for the first note of a checked sound file."""
        if refine and not self.can_refine:
            raise DataError(f"{self.datamodule.data_dir.name} has no synth: nothing to refine")
        notes, facts = file_notes(path, self.rate, self.n_samples, self.onset, self.onset_db)
        notes = notes[0][None]
        images, out = self.outputs(notes)
        self.n_requests += 1
        here = self.work_dir / f"{self.n_requests:04d}"
        shown = Shown(
            message=(
                f"{Path(path).name}: one note of {self.n_samples / self.rate:g} s from "
                f"{facts[0]['onset_s']:.3f} s (of {facts[0]['file_seconds']:.2f} s at "
                f"{facts[0]['file_rate']} Hz)"
            ),
            header=["parameter", "unit", "predicted", "confidence"],
            audio={"input, as the model heard it": (self.rate, notes[0].numpy())},
        )
        if images is not None:
            shown.images["input's spectral image"] = image_png(
                here / "input_image.png",
                images[0].numpy(),
                list(self.imager.channel_labels),
                "the model's input",
            )
        values = {s.name: out[s.name][0].numpy() for s in self.model.specs}
        refined = None
        if self.renderer is not None:
            generator = torch.Generator().manual_seed(self.seed)
            resynth = self.renderer.render_values(values, generator)
            shown.audio["resynthesis of the prediction"] = (self.rate, resynth[0].numpy())
            more = ()
            if refine:
                refined, audio = refine_notes(
                    instantiate(self.refiner_cfg), self.renderer.renderer, notes, values
                )
                shown.header.append("refined")
                shown.audio["resynthesis of the refined estimate"] = (self.rate, audio[0].numpy())
                more = (audio[0],)
            table = [
                [r[0] + (f" ({r[1]})" if r[1] else ""), r[2], *r[4:]]
                for r in self.rows(out, refined)
            ]
            shown.images["input and resynthesis"] = comparison_figure(
                here / "comparison.png",
                notes[0],
                resynth[0],
                self.imager,
                title=Path(path).name,
                table=table,
                col_labels=["parameter", "predicted", *(["refined"] if refined else [])],
                labels=(
                    "input, as the model heard it",
                    "resynthesis of the prediction",
                    "resynthesis of the refined estimate",
                ),
                more=more,
            )
        else:
            shown.message += "; the dataset was converted from recordings: no resynthesis"
        shown.rows = self.rows(out, refined)
        return shown
