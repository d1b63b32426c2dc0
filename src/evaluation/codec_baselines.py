"""Classic codecs a neural codec must beat at equal bitrate, each coding every clip on its own.

- silence (0 bit/s): the trivial codec, SNR 0 dB.
- mu-law PCM at b bits a sample (G.711 is 8 bits): sample_rate x b bit/s, exactly.
- Downsampling to r Hz, 8-bit mu-law there, resampling back (torchaudio's windowed sinc):
  r x 8 bit/s; it keeps everything below r/2 and nothing above.
- At a model's bitrate exactly (`at_kbps`): downsampling to r Hz with b-bit mu-law there,
  for each b in `AT_KBPS_BITS` with r = kbps / b a whole number of Hz (r x b = the model's
  bit/s); and 2-bit ADPCM (libsndfile's NMS ADPCM at 16 kbit/s for 8 kHz, through soundfile,
  which the project already uses to read audio) at r = kbps / 2 Hz: its payload is exactly the
  model's bitrate, and its `kbps` is measured from the bytes it wrote (the block headers add a
  few percent).
- MP3 (LAME through `lameenc`, constant bitrate, optional: skipped with a notice where it is
  not installed; decoded by libsndfile through soundfile). Its `kbps` is measured from the
  bytes it wrote (frames, headers and the flushed tail of each clip), which for short clips is
  a little above the nominal rate. LAME may pick a lower output rate at low bitrates; the
  decoded audio is resampled back, and its fixed encoder + decoder delay, found once per
  bitrate on a probe signal, is removed before comparing.

Every baseline is a `Baseline`: a name, a family, its bitrate, and `__call__` that takes
(B, T) float audio and returns its (B, T) reconstruction.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch import Tensor

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

MULAW_BITS = (2, 3, 4, 6, 8)
DOWNSAMPLE_RATES = (1000, 2000, 4000, 8000)
MP3_KBPS = (8, 16, 24, 32, 48, 64)
AT_KBPS_BITS = (4, 6, 8)  # mu-law bits of the downsampling baselines at a model's bitrate
MIN_RATE = 500  # Hz: below this a downsampled clip keeps too little to be worth a row
ADPCM_SUBTYPE = ("RAW", "NMS_ADPCM_16")  # 2 bits a sample (16 kbit/s at 8 kHz)


def mp3_available() -> bool:
    return importlib.util.find_spec("lameenc") is not None


@dataclass
class Baseline:
    name: str
    family: str
    kbps: float

    def __call__(self, audio: Tensor, sample_rate: int) -> Tensor:
        raise NotImplementedError


@dataclass
class Silence(Baseline):
    """The trivial codec: send nothing, play silence (SNR 0 dB by definition)."""

    def __call__(self, audio: Tensor, sample_rate: int) -> Tensor:
        return torch.zeros_like(audio)


@dataclass
class MuLawPCM(Baseline):
    bits: int = 8

    def __call__(self, audio: Tensor, sample_rate: int) -> Tensor:
        return mulaw(audio, self.bits)


def mulaw(audio: Tensor, bits: int) -> Tensor:
    """Encode to 2**bits mu-law levels and decode (clipped to [-1, 1] first)."""
    q = 2**bits
    return AF.mu_law_decoding(AF.mu_law_encoding(audio.clamp(-1.0, 1.0), q), q)


@dataclass
class Downsample(Baseline):
    rate: int = 8000
    bits: int = 8

    def __call__(self, audio: Tensor, sample_rate: int) -> Tensor:
        low = AF.resample(audio, sample_rate, self.rate)
        return AF.resample(mulaw(low, self.bits), self.rate, sample_rate)[..., : audio.shape[-1]]


def adpcm_available() -> bool:
    fmt, subtype = ADPCM_SUBTYPE
    return subtype in sf.available_subtypes(fmt)


@dataclass
class ADPCM(Baseline):
    """Downsampling to `rate` Hz, 2-bit NMS ADPCM there (libsndfile), resampling back; every
    clip coded on its own, `kbps` measured from the bytes written."""

    rate: int = 3000

    def __call__(self, audio: Tensor, sample_rate: int) -> Tensor:
        fmt, subtype = ADPCM_SUBTYPE
        low = AF.resample(audio.detach().cpu().float(), sample_rate, self.rate).clamp(-1.0, 1.0)
        out, nbytes = torch.zeros_like(low), 0
        for i, clip in enumerate(low.numpy()):
            buf = io.BytesIO()
            sf.write(buf, clip, self.rate, format=fmt, subtype=subtype)
            nbytes += buf.tell()
            buf.seek(0)
            y, _ = sf.read(
                buf, dtype="float32", samplerate=self.rate, channels=1, format=fmt, subtype=subtype
            )
            out[i, : min(len(y), out.shape[1])] = torch.from_numpy(y[: out.shape[1]])
        self.kbps = nbytes * 8 / (len(low) * audio.shape[-1] / sample_rate) / 1000.0
        back = AF.resample(out, self.rate, sample_rate)[..., : audio.shape[-1]]
        return back.to(audio.device)


def at_bitrate(kbps: float, sample_rate: int) -> list[Baseline]:
    """Classic codecs spending exactly `kbps` (payload): downsampling + b-bit mu-law, and
    2-bit ADPCM where libsndfile has it; rates that are not whole Hz are skipped."""
    bits_per_s = round(kbps * 1000)
    out: list[Baseline] = []
    for b in AT_KBPS_BITS:
        rate, rest = divmod(bits_per_s, b)
        if rest == 0 and MIN_RATE <= rate < sample_rate:
            out.append(
                Downsample(
                    f"down_{rate}Hz_{b}bit", f"downsample + {b}-bit mu-law", kbps, rate=rate, bits=b
                )
            )
    rate, rest = divmod(bits_per_s, 2)
    if rest == 0 and MIN_RATE <= rate < sample_rate and adpcm_available():
        out.append(ADPCM(f"adpcm2_{rate}Hz", "downsample + 2-bit ADPCM", kbps, rate=rate))
    return out


@dataclass
class MP3(Baseline):
    nominal_kbps: int = 32
    _delay: dict[int, int] = field(default_factory=dict, repr=False)

    def encode(self, clip: np.ndarray, sample_rate: int) -> bytes:
        import lameenc

        enc = lameenc.Encoder()
        enc.set_bit_rate(self.nominal_kbps)
        enc.set_in_sample_rate(sample_rate)
        enc.set_channels(1)
        enc.set_quality(2)  # LAME's high-quality search (0 best, 9 fastest)
        pcm = np.round(np.clip(clip, -1.0, 1.0) * 32767).astype(np.int16)
        return bytes(enc.encode(pcm.tobytes())) + bytes(enc.flush())

    def decode(self, data: bytes, sample_rate: int) -> np.ndarray:
        y, rate = sf.read(io.BytesIO(data), dtype="float32")
        if rate != sample_rate:
            y = AF.resample(torch.from_numpy(y), rate, sample_rate).numpy()
        return y

    def delay(self, sample_rate: int) -> int:
        """Samples by which decoded audio lags its input (encoder + decoder), measured once."""
        if sample_rate not in self._delay:
            probe = np.random.default_rng(0).normal(0, 0.1, sample_rate).astype(np.float32)
            y = self.decode(self.encode(probe, sample_rate), sample_rate)
            ref = probe[: sample_rate // 4]
            corr = np.correlate(y, ref, "valid")
            self._delay[sample_rate] = int(np.argmax(corr))
        return self._delay[sample_rate]

    def __call__(self, audio: Tensor, sample_rate: int) -> Tensor:
        clips = audio.detach().cpu().float().numpy()
        d, t = self.delay(sample_rate), clips.shape[-1]
        out, nbytes = np.zeros_like(clips), 0
        for i, clip in enumerate(clips):
            data = self.encode(clip, sample_rate)
            nbytes += len(data)
            y = self.decode(data, sample_rate)[d : d + t]
            out[i, : len(y)] = y
        self.kbps = nbytes * 8 / (len(clips) * t / sample_rate) / 1000.0
        return torch.from_numpy(out).to(audio.device)


def baselines(
    sample_rate: int,
    mulaw_bits: Sequence[int] = MULAW_BITS,
    rates: Sequence[int] = DOWNSAMPLE_RATES,
    mp3_kbps: Sequence[int] | None = MP3_KBPS,
    at_kbps: Sequence[float] = (),
) -> list[Baseline]:
    """The classic codecs at several bitrates (MP3 only where lameenc is installed), and at
    each of `at_kbps` exactly (`at_bitrate`; the models' bitrates)."""
    out: list[Baseline] = [Silence("silence", "silence", 0.0)]
    for kbps in dict.fromkeys(float(k) for k in at_kbps):
        out += at_bitrate(kbps, sample_rate)
    out += [
        MuLawPCM(f"mulaw_{b}bit", "mu-law PCM", sample_rate * b / 1000.0, bits=b)
        for b in mulaw_bits
    ]
    out += [
        Downsample(f"down_{r}Hz", "downsample + 8-bit mu-law", r * 8 / 1000.0, rate=r)
        for r in rates
        if r < sample_rate
    ]
    if mp3_kbps:
        if mp3_available():
            out += [MP3(f"mp3_{k}k", "MP3 (LAME)", float(k), nominal_kbps=k) for k in mp3_kbps]
        else:
            log.warning(
                "MP3 baseline skipped: lameenc is not installed (pip install -e '.[codec]')"
            )
    return out
