"""Task 3, the neural audio codec: waveform in, waveform out through a compact code.

The network (`src/models/components/codec.py`: encoder, quantizer, decoder) comes in as a
config node, built by `src.utils.build` (never Hydra's `instantiate`); the data facts (input
shape, sample rate) as plain values, so a checkpoint's hyperparameters rebuild it. Training
minimises -SNR (dB, per record, so quiet and loud sounds count alike), an STFT distance
(spectral convergence + log magnitude at `loss_fft_sizes`; one 512-point resolution by default:
on this CPU each resolution costs as much as the network) and the quantizer's commitment loss.

Logged per stage (`src/metrics/keys.py` names): `snr_db`, `si_sdr_db`, `psnr_db`, `mse`,
`mrstft`, `logmel_db` (and `stoi` at test, where pystoi is installed), the same per source
(`{stage}/{source}/{name}`, when the datamodule names its sources), the bitrate as computed
from the architecture (`kbps`), the code statistics of the stage (`entropy_kbps`: the entropy
of the stage's own code histogram, an optimistic bound, since a coder cannot fit its tables
on the clips it codes; `usage`, `perplexity`), at test `coded_kbps` (static per-stage tables
fitted on the training split's codes of the tested weights, applied to the test codes: what
an order-0 entropy coder reaches), `loss`, and `score` = `snr_db`, the checkpoint metric.
Held-out sources are reported on their own and kept out of the stage means.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from src.data.spec import DataSpec
from src.errors import ConfigError
from src.metrics import metric_key
from src.metrics.audio import stft_power
from src.metrics.codec import (
    WAVE_METRICS,
    CodeStats,
    WaveformMetrics,
    stoi_available,
    waveform_metrics,
)
from src.models.optim import configure_optimizers, factories
from src.utils.build import build_component
from src.utils.config import plain, target_config
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

LOSS_FFT_SIZES = (512,)
TABLE_BATCH = 64  # training clips encoded at once when fitting the code tables


def neg_snr_db(pred: Tensor, target: Tensor, floor: float = 1e-8) -> Tensor:
    """Mean over records of -SNR in dB; `floor` (per sample) keeps silent records finite."""
    t = target.shape[-1] * floor
    err = (pred - target).square().flatten(1).sum(1)
    energy = target.square().flatten(1).sum(1)
    return (10 * torch.log10((err + t) / (energy + t))).mean()


def mrstft_loss(pred: Tensor, target: Tensor, fft_sizes=LOSS_FFT_SIZES) -> Tensor:
    """Spectral convergence + log-magnitude L1, averaged over FFT sizes (differentiable)."""
    pred, target = pred.flatten(1), target.flatten(1)
    total = pred.new_zeros(())
    for n in fft_sizes:
        pp, pt = stft_power(pred, n), stft_power(target, n)
        sc = (pt.sqrt() - pp.sqrt()).flatten(1).norm(dim=1) / pt.sqrt().flatten(1).norm(dim=1)
        total = total + sc.mean() + 0.5 * (pt.log() - pp.log()).abs().mean()
    return total / len(fft_sizes)


class CodecModule(L.LightningModule):
    """A codec network trained to reconstruct its input. Batches are `(x, source)` with x
    (B, 1, T) float32 waveforms; `source` (B,) indexes the datamodule's `source_names` (any
    other second element, e.g. a VIMH dataset's label codes, is ignored)."""

    def __init__(
        self,
        net: dict,
        input_shape: list[int],
        sample_rate: int | None = None,
        input_kind: str | None = "audio",
        heads: list | None = None,
        train_means: dict | None = None,
        snr_weight: float = 1.0,
        mrstft_weight: float = 1.0,
        commitment_weight: float = 1.0,
        loss_fft_sizes: list[int] = LOSS_FFT_SIZES,
        stoi: bool = True,
        optimizer: Any = None,
        scheduler: Any = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.task = "codec"
        # `heads` and `train_means` (passed by train.py for every task) are not a codec's business.
        net = target_config(net, "model.net")
        if input_kind not in (None, "audio"):
            raise ConfigError(
                f"the codec takes waveforms but the data serves {input_kind}; use a waveform "
                f"data config (e.g. data=codec)"
            )
        if sample_rate is None:
            raise ConfigError("the codec needs the data's sample rate; none was given")
        input_shape = [int(v) for v in plain(input_shape)]
        self.save_hyperparameters(
            {
                "net": net,
                "input_shape": input_shape,
                "sample_rate": int(sample_rate),
                "input_kind": "audio",
                "snr_weight": float(snr_weight),
                "mrstft_weight": float(mrstft_weight),
                "commitment_weight": float(commitment_weight),
                "loss_fft_sizes": [int(n) for n in plain(loss_fft_sizes)],
                "stoi": bool(stoi),
                "compile": bool(compile),
            }
        )
        self.optimizer_factory, self.scheduler_factory = factories(
            optimizer, scheduler, "val/score"
        )
        self.net = build_component(
            net, "model.net", input_shape=tuple(input_shape), sample_rate=int(sample_rate)
        )
        counts = self.net.weight_counts()
        # `backbone`/`heads`/`total` as every task reports them (scripts/count_params.py).
        self.param_counts = {"backbone": counts["total"], "heads": 0, **counts}
        self.group_names: list[str] = ["all"]
        self.heldout: set[int] = set()
        self._make_metrics()
        log.info(
            f"{type(self.net).__name__}: {counts['parameters']:,} parameters + "
            f"{counts['codebooks']:,} codebook entries = {counts['total']:,} weights; hop "
            f"{self.net.hop} ({self.net.frame_rate:g} frames/s), "
            f"{self.net.quantizer.bits_per_frame:g} bits/frame = {self.net.bitrate_kbps:g} kbps"
        )

    # --- metrics -------------------------------------------------------------------------------
    def _make_metrics(self) -> None:
        sizes = self.net.quantizer.codebook_sizes
        for stage in ("train", "val", "test"):
            names = WAVE_METRICS + (("stoi",) if stage == "test" and self.use_stoi else ())
            setattr(self, f"{stage}_wave", WaveformMetrics(names, len(self.group_names)))
            setattr(self, f"{stage}_codes", CodeStats(sizes))

    @property
    def use_stoi(self) -> bool:
        return self.hparams.stoi and stoi_available()

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        names = getattr(datamodule, "source_names", None)
        if names:
            self.group_names = list(names)
            held = set(getattr(datamodule, "heldout", ()))
            self.heldout = {i for i, n in enumerate(names) if n in held}
            self._make_metrics()
            self.to(self.device)
        if self.hparams.stoi and not stoi_available() and stage == "test":
            log.warning("STOI skipped: pystoi is not installed (pip install -e '.[codec]')")
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def groups(self, batch: Any, x: Tensor) -> Tensor:
        """(B,) source indices, or zeros when the batch carries none."""
        second = batch[1] if isinstance(batch, (list, tuple)) and len(batch) > 1 else None
        if len(self.group_names) > 1 and second is not None and second.ndim == 1:
            return second.long()
        return torch.zeros(len(x), dtype=torch.long, device=x.device)

    # --- steps ---------------------------------------------------------------------------------
    def forward(self, x: Tensor):
        """(B, 1, T) -> (reconstruction (B, 1, T), Quantized)."""
        return self.net(x)

    def losses(self, x: Tensor, y: Tensor, commitment: Tensor) -> dict[str, Tensor]:
        h = self.hparams
        parts = {
            "neg_snr": neg_snr_db(y, x),
            "mrstft_loss": mrstft_loss(y, x, h.loss_fft_sizes),
            "commitment": commitment,
        }
        parts["loss"] = (
            h.snr_weight * parts["neg_snr"]
            + h.mrstft_weight * parts["mrstft_loss"]
            + h.commitment_weight * commitment
        )
        return parts

    def _step(self, batch: Any, stage: str) -> Tensor:
        x = batch[0]
        y, q = self(x)
        parts = self.losses(x, y, q.loss)
        groups = self.groups(batch, x)
        keep = torch.ones_like(groups, dtype=torch.bool)
        for g in self.heldout:
            keep &= groups != g
        with torch.no_grad():
            getattr(self, f"{stage}_codes").update(q.codes[keep])
            if stage != "train":
                values = waveform_metrics(
                    y, x, self.hparams.sample_rate, stoi=stage == "test" and self.use_stoi
                )
                getattr(self, f"{stage}_wave").update(values, groups)
        on_step = stage == "train"
        self.log_dict(
            {metric_key(stage, k): v.detach() for k, v in parts.items()},
            on_step=False,
            on_epoch=True,
            batch_size=len(x),
            prog_bar=on_step,
        )
        return parts["loss"]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    @torch.no_grad()
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Originals, reconstructions, codes and source indices of a batch."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        y, q = self(x)
        return {"original": x, "decoded": y, "codes": q.codes, "source": self.groups(batch, x)}

    def epoch_metrics(self, stage: str) -> dict[str, Tensor]:
        """The stage's metrics (means over in-distribution records; per source as well)."""
        out: dict[str, Tensor] = {}
        wave = getattr(self, f"{stage}_wave")
        codes = getattr(self, f"{stage}_codes")
        if wave.update_called:
            include = [g for g in range(len(self.group_names)) if g not in self.heldout]
            overall, per_group = wave.compute(include)
            for name, v in overall.items():
                out[metric_key(stage, name)] = v
            if len(self.group_names) > 1:
                for name, v in per_group.items():
                    for g, source in enumerate(self.group_names):
                        if math.isfinite(float(v[g])):
                            out[metric_key(stage, name, source)] = v[g]
            out[metric_key(stage, "score")] = overall["snr_db"]
        if codes.update_called:
            table = getattr(self, "code_table", None) if stage == "test" else None
            stats = codes.compute(table)
            frames_per_ms = self.net.frame_rate / 1000.0
            out[metric_key(stage, "kbps")] = torch.tensor(self.net.bitrate_kbps)
            out[metric_key(stage, "entropy_kbps")] = stats["entropy_bits"] * frames_per_ms
            if "table_bits" in stats:
                out[metric_key(stage, "coded_kbps")] = stats["table_bits"] * frames_per_ms
            out[metric_key(stage, "usage")] = stats["usage"]
            out[metric_key(stage, "perplexity")] = stats["perplexity"]
        return out

    def on_test_epoch_start(self) -> None:
        self.code_table = self.train_code_counts()

    @torch.no_grad()
    def train_code_counts(self) -> Tensor | None:
        """The tested weights' code histogram (S, K) over the datamodule's training clips:
        the static tables an entropy coder would ship, fitted before it sees the test clips
        (`test/coded_kbps`). None when the data has no training split."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if not hasattr(dm, "tensors"):
            return None
        try:
            x, _ = dm.tensors("train")
        except KeyError:
            return None
        if len(x) == 0:
            return None
        stats = CodeStats(self.net.quantizer.codebook_sizes).to(self.device)
        was_training = self.training
        self.eval()  # no codebook update or restart from these clips
        for chunk in x.split(TABLE_BATCH):
            stats.update(self(chunk.to(self.device))[1].codes)
        self.train(was_training)
        return stats.counts

    def _epoch_end(self, stage: str) -> None:
        values = self.epoch_metrics(stage)
        if values:
            self.log_dict(
                {k: v.float() for k, v in values.items()},
                on_step=False,
                on_epoch=True,
                sync_dist=False,  # torchmetrics states are already summed over processes
            )
        getattr(self, f"{stage}_wave").reset()
        getattr(self, f"{stage}_codes").reset()

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    # --- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The optimizer over every parameter and its schedule, by the rules shared by every
        task (`src/models/optim.py`)."""
        return configure_optimizers(
            self, self.optimizer_factory, self.scheduler_factory, self.parameters(), "val/score"
        )

    # --- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Name the task, so eval rebuilds this class from the checkpoint (src/models/tasks.py)."""
        checkpoint["task"] = self.task

    @staticmethod
    def data_differences(hparams: dict, datamodule: Any) -> list[str]:
        """A codec is convolutional along time: any clip length works, but the data must be
        waveforms at the rate it was trained on (tasks.check_data_matches)."""
        spec: DataSpec = datamodule.spec
        diffs = []
        if spec.input_kind != "audio":
            diffs.append(f"input kind: audio vs {spec.input_kind}")
        if spec.sample_rate is not None and int(spec.sample_rate) != int(hparams["sample_rate"]):
            diffs.append(f"sample rate: {hparams['sample_rate']} Hz vs {spec.sample_rate} Hz")
        return diffs
