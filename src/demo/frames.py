"""The demos of the two tasks that need no dataset: the codec (original against decoded, with
the bitrate) and the sequence model (a phrase with its one-step predictions and a rollout).

Their checkpoints hold everything needed to hear an upload as their data was heard: the
codec its sample rate, the sequence model how its frames were made (`hparams.frames`), so a
phrase is imaged by the same imager the report uses to invert frames (`frame_imager`) and
heard again through Griffin-Lim, as `src/callbacks/sequence_report.py` does.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from src.audio.io import _cut, read_audio
from src.callbacks.sequence_report import KINDS, example_figure
from src.data.frames import frame_imager
from src.demo.core import Shown, spectrogram_png
from src.errors import DataError
from src.imaging.inversion import SpectrogramInverter
from src.models.codec_module import neg_snr_db


class CodecDemo:
    """Encode and decode the first `codec_seconds` of a sound."""

    kind = "codec"
    can_refine = False

    def __init__(self, model, cfg, work_dir: Path) -> None:
        self.model, self.work_dir = model, Path(work_dir)
        self.rate = int(model.hparams.sample_rate)
        self.max_seconds = float(cfg.codec_seconds)
        self.n_requests = 0

    def describe(self) -> str:
        net = self.model.net
        return (
            f"**{type(net).__name__}** codec at {self.rate} Hz: {net.bitrate_kbps:g} kbps "
            f"({net.quantizer.bits_per_frame:g} bits x {net.frame_rate:g} frames/s)"
        )

    def test_records(self, n: int) -> list[str]:
        return []  # the codec's sources are several datasets: upload a sound instead

    @torch.no_grad()
    def run(self, path: Path, refine: bool = False) -> Shown:
        mono, rate = read_audio(path)
        seconds = min(len(mono) / rate, self.max_seconds)
        hop = int(self.model.net.hop)
        n = max(hop, math.ceil(seconds * self.rate / hop) * hop)
        x = _cut(torch.from_numpy(mono), 0, rate, self.rate, n)
        y, _ = self.model(x[None, None])
        y = y[0, 0]
        snr = -float(neg_snr_db(y[None], x[None]))
        self.n_requests += 1
        net = self.model.net
        shown = Shown(
            message=f"{Path(path).name}: the first {n / self.rate:.2f} s at {self.rate} Hz",
            header=["measure", "unit", "value"],
            rows=[
                ["bitrate", "kbps", f"{net.bitrate_kbps:g}"],
                ["SNR of decoded against original", "dB", f"{snr:.2f}"],
            ],
            audio={"original": (self.rate, x.numpy()), "decoded": (self.rate, y.numpy())},
        )
        shown.images["original and decoded"] = spectrogram_png(
            self.work_dir / f"{self.n_requests:04d}" / "codec.png",
            {"original": x, f"decoded ({net.bitrate_kbps:g} kbps)": y},
            self.rate,
        )
        return shown


class SequenceDemo:
    """Image a phrase as the model's frames; predict every frame one step ahead from the true
    frames before it, and roll out from the first `context` frames; hear all three."""

    kind = "sequence"
    can_refine = False

    def __init__(self, model, cfg, work_dir: Path) -> None:
        self.model, self.work_dir = model, Path(work_dir)
        self.facts = dict(model.hparams.frames)
        self.rate = int(self.facts["sample_rate"])
        self.hop = int(self.facts["hop_length"])
        self.context = int(model.window[0])
        self.max_frames = int(cfg.sequence_frames)
        self.n_iter = int(cfg.griffin_lim_iters)
        self.n_requests = 0

    def describe(self) -> str:
        return (
            f"**{type(self.model.net).__name__}** predicting frames of "
            f"{int(self.facts['height'])} bins every {1000 * self.hop / self.rate:.0f} ms at "
            f"{self.rate} Hz; rollouts primed with {self.context} frames"
        )

    def test_records(self, n: int) -> list[str]:
        return []

    @torch.no_grad()
    def run(self, path: Path, refine: bool = False) -> Shown:
        mono, rate = read_audio(path)
        available = 1 + int(len(mono) * self.rate / rate) // self.hop
        n_frames = min(available, self.max_frames)
        if n_frames <= self.context + 1:
            raise DataError(
                f"{Path(path).name}: {len(mono) / rate:.2f} s is too short: the model is primed "
                f"with {self.context} frames ({self.context * self.hop / self.rate:.2f} s) and "
                f"predicts at least one more"
            )
        imager = frame_imager(self.facts, n_frames)
        audio = _cut(torch.from_numpy(mono), 0, rate, self.rate, imager.n_samples)
        frames = imager(audio[None])[:, 0].float().div(255.0).transpose(1, 2)  # (1, W, H)
        pred = self.model.predict_record(frames, self.context)
        lo, hi = float(self.facts["db_min"]), float(self.facts["db_max"])
        inverter = SpectrogramInverter(imager, n_iter=self.n_iter)
        shown = Shown(
            message=(
                f"{Path(path).name}: {n_frames} frames ({n_frames * self.hop / self.rate:.2f} s),"
                f" primed with {self.context}"
            ),
            header=["prediction", "unit", "log-mel MSE after the context"],
        )
        target = pred["target"][0, self.context :]
        for kind in KINDS:
            db = lo + pred[kind].transpose(1, 2) * (hi - lo)
            label = {"target": "phrase (its frames, heard again)"}.get(kind, kind)
            shown.audio[label.replace("_", "-")] = (self.rate, inverter.invert_db(db)[0].numpy())
            if kind != "target":
                err = float((pred[kind][0, self.context :] - target).square().mean())
                shown.rows.append([kind.replace("_", "-"), "unit log-mel", f"{err:.4f}"])
        self.n_requests += 1
        shown.images["phrase, one-step and rollout"] = example_figure(
            {k: v[0].numpy() for k, v in pred.items()},
            self.context,
            self.work_dir / f"{self.n_requests:04d}" / "sequence.png",
            f"{Path(path).name}: primed with {self.context} frames",
        )
        return shown
