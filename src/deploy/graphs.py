"""What gets exported: plain nn.Modules from raw input to decoded values, traceable as one graph.

A checkpoint's model takes normalised images (or waveforms) and returns raw head outputs; the
numbers a user wants come after the project's imaging, normalisation and each head's decode.
These wrappers put those steps inside the graph, so ONNX Runtime or TorchScript alone turns a
note into parameters:

- `PowerImager`: the dataset imager's power channels (`SpectrogramImager`, any frequency
  scale, several resolutions) from real-valued operators only: the STFT as a strided conv1d
  whose kernels are the windowed Fourier basis (as `STFTMelFrontend` computes it), the
  calibrated filterbank as a matmul, dB, the fixed pixel range and the uint8 rounding. Conv,
  MatMul and Log export to every runtime; complex tensors and FFTs do not (TorchScript traces
  them, but ONNX's exporters do not take complex values). The phase and modulation kinds
  (angles of complex sums, an FFT over time) are refused.
- `EstimatorGraph`: waveform or uint8 image -> normalisation -> network -> per head its value
  (the continuous estimate where the head has one), class, class probability and raw output.
- `CodecEncoderGraph` / `CodecDecoderGraph`: the codec's two halves (waveform -> codes,
  codes -> waveform).

Pixels agree with `SpectrogramImager` except where float32 rounding of two different STFT
algorithms lands on either side of a pixel boundary (one level, a few pixels in 10^5:
`scripts/bench_export.py` counts them; docs/deploy.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.errors import ConfigError
from src.imaging import SpectrogramImager
from src.imaging.filters import window as analysis_window
from src.models.components.frontend import fourier_kernels

WAVEFORM, IMAGE = "waveform", "image"
INPUTS = (WAVEFORM, IMAGE)
IMAGED_KINDS = ("power",)  # channel kinds the waveform graph computes


class PowerImager(nn.Module):
    """(B, n_samples) float waveforms -> (B, C, H, W) pixel values 0..255 (float), as
    `SpectrogramImager.forward` makes them, for images of power channels only."""

    def __init__(self, imager: SpectrogramImager) -> None:
        super().__init__()
        other = [s for s in imager.specs if s.kind not in IMAGED_KINDS]
        if other:
            raise ConfigError(
                f"channel '{other[0].label}' is of kind {other[0].kind}; the waveform graph "
                f"computes {', '.join(IMAGED_KINDS)} channels only: export input=image and image "
                f"notes with this project's imager"
            )
        self.n_samples, self.hop, self.width = imager.n_samples, imager.hop_length, imager.width
        self.n_ffts = sorted({s.n_fft for s in imager.specs})
        for n_fft in self.n_ffts:
            w = analysis_window(n_fft, imager.window, torch.float64)
            self.register_buffer(f"kernels_{n_fft}", fourier_kernels(w), persistent=False)
            # The imager's calibrated power filterbank: its rows interleave (re, im) weights,
            # equal for both, so every other row is the (n_freqs, scales x H) matrix.
            pfb = getattr(imager, f"pfb_{n_fft}")[0::2].contiguous()
            self.register_buffer(f"fb_{n_fft}", pfb, persistent=False)
        group = imager._groups
        h = imager.height
        # Per channel: (n_fft, first filterbank column) in the imager's channel order.
        self.columns = [
            (s.n_fft, group[s.n_fft]["scales"].index(s.scale) * h) for s in imager.specs
        ]
        self.height = h
        self.tiny = imager._tiny
        affine = [imager._pixel_affine(c) for c in range(len(imager.specs))]
        self.register_buffer("scale", torch.tensor([a[1] for a in affine]).view(1, -1, 1, 1))
        self.register_buffer("offset", torch.tensor([a[0] for a in affine]).view(1, -1, 1, 1))

    def pads(self, n_fft: int) -> tuple[int, int]:
        """Zeros before and after the note so frame t is centred on sample t * hop."""
        half = n_fft // 2
        end = (self.width - 1) * self.hop - half + n_fft
        return half, max(0, end - self.n_samples)

    def forward(self, audio: Tensor) -> Tensor:
        x = audio.reshape(audio.shape[0], 1, self.n_samples).float()
        power = {}
        for n_fft in self.n_ffts:
            z = F.conv1d(
                F.pad(x, self.pads(n_fft)), getattr(self, f"kernels_{n_fft}"), None, self.hop
            )
            z = z[..., : self.width]  # (B, 2F, W)
            n_freqs = z.shape[1] // 2
            p = z[:, :n_freqs].square() + z[:, n_freqs:].square()
            power[n_fft] = p.transpose(1, 2) @ getattr(self, f"fb_{n_fft}")  # (B, W, scales*H)
        rows = [power[n][..., c : c + self.height] for n, c in self.columns]
        db = 10.0 * torch.log10(torch.stack(rows, 1).clamp_min(self.tiny))  # (B, C, W, H)
        pixels = (db.transpose(2, 3) * self.scale + (self.offset + 0.5)).clamp(0.0, 255.5)
        return torch.floor(pixels)


class EstimatorGraph(nn.Module):
    """A parameter-estimation model from raw input to decoded values.

    `input=waveform`: (B, n_samples) float32 notes; image models image them inside
    (`PowerImager`) and normalise, waveform models (trainable front-ends) take them as they
    are. `input=image`: (B, C, H, W) uint8 images as the dataset stores them. Outputs, per
    head in order: value (B,) float32 in natural units, class (B,) int64, then the class
    probability (B,) for heads with a class posterior, and the raw output (B, K).
    """

    def __init__(
        self,
        module: nn.Module,
        input: str,
        imager: SpectrogramImager | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        super().__init__()
        if input not in INPUTS:
            raise ConfigError(f"input must be one of {INPUTS}, got {input!r}")
        self.net, self.heads = module.net, module.heads
        self.audio_model = getattr(module.net, "input_kind", "image") == "audio"
        self.input = input
        if self.audio_model and input == IMAGE:
            raise ConfigError(
                f"{type(module.net).__name__} takes waveforms (its front-end makes the image "
                f"inside the network): export input=waveform"
            )
        self.imager = None
        if not self.audio_model:
            if mean is None or std is None:
                raise ConfigError("an image model needs its normalisation statistics")
            std_t = torch.tensor(std, dtype=torch.float32)
            self.register_buffer("norm_scale", (1.0 / std_t).view(1, -1, 1, 1))
            self.register_buffer(
                "norm_shift", (-torch.tensor(mean, dtype=torch.float32) / std_t).view(1, -1, 1, 1)
            )
            if input == WAVEFORM:
                if imager is None:
                    raise ConfigError("the waveform graph of an image model needs its imager")
                self.imager = PowerImager(imager)
        self.has_probs = {
            name: head.class_probabilities(torch.zeros(1, head.num_outputs)) is not None
            for name, head in self.heads.items()
        }

    def output_names(self) -> list[str]:
        names = []
        for name in self.heads:
            names += [name, f"{name}_class"]
            if self.has_probs[name]:
                names.append(f"{name}_prob")
            names.append(f"{name}_raw")
        return names

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.audio_model:
            x = x.reshape(x.shape[0], 1, -1).float()
        else:
            pixels = self.imager(x) if self.imager is not None else x.float()
            x = pixels * self.norm_scale + self.norm_shift
        features = self.net(x)
        outputs: list[Tensor] = []
        for name, head in self.heads.items():
            raw = head(features)
            value, classes = head.decode(raw)
            outputs += [value, classes]
            if self.has_probs[name]:
                probs = head.class_probabilities(raw)
                outputs.append(probs.gather(1, classes[:, None])[:, 0])
            outputs.append(raw.float())
        return tuple(outputs)


class CodecEncoderGraph(nn.Module):
    """(B, n_samples) waveforms -> (B, stages, frames) int64 codes (`ConvCodec.encode`)."""

    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        self.codec = codec

    def output_names(self) -> list[str]:
        return ["codes"]

    def forward(self, x: Tensor) -> Tensor:
        c = self.codec
        return c.quantizer(c.encoder(c._pad(x.reshape(x.shape[0], 1, -1).float()))).codes


class CodecDecoderGraph(nn.Module):
    """(B, stages, frames) int64 codes -> (B, n_samples) waveforms (`ConvCodec.decode`, cut
    back to the note length the encoder was given)."""

    def __init__(self, codec: nn.Module, n_samples: int) -> None:
        super().__init__()
        self.codec, self.n_samples = codec, int(n_samples)

    def output_names(self) -> list[str]:
        return ["waveform"]

    def forward(self, codes: Tensor) -> Tensor:
        c = self.codec
        y = c.decoder(c.quantizer.decode(codes.long()))
        return y[:, 0, : self.n_samples]


def codec_frames(codec: nn.Module, n_samples: int) -> int:
    """Code frames of a note of `n_samples` (the encoder pads to a whole number of hops)."""
    return math.ceil(n_samples / codec.hop)
