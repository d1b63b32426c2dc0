"""Read the recorded samples of a SoundFont 2 file, with the pitch each was recorded at.

A SoundFont bank stores its recordings as one block of 16-bit PCM (`sdta/smpl`) and, per
sample, a 46-byte header (`pdta/shdr`): its name, where it starts and ends in the block, its
rate, the MIDI note it was recorded at and a correction in cents. That is a labelled set of
real instrument notes: the sound-matching evaluation uses the TimGM6mb bank that ships inside
the `pretty_midi` package (docs/sound_matching.md says which samples and under what license).
Only what is needed to read samples is parsed; instruments, presets and generators are not.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.errors import DataError

SHDR_BYTES = 46
MONO, RIGHT, LEFT, LINKED = 1, 2, 4, 8
ROM = 0x8000


@dataclass(frozen=True)
class Sample:
    name: str
    sample_rate: int
    pitch: float  # MIDI note of the recording, cents correction included
    audio: np.ndarray  # float32 in [-1, 1)
    kind: int  # SF2 sampleType (1 mono, 2 right, 4 left, 8 linked)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def _chunks(data: bytes, start: int, stop: int):
    """(id, payload offset, size) of the RIFF sub-chunks in data[start:stop]."""
    at = start
    while at + 8 <= stop:
        cid, size = struct.unpack_from("<4sI", data, at)
        yield cid, at + 8, size
        at += 8 + size + (size & 1)


def read_samples(path: str | Path) -> list[Sample]:
    """Every sample of a .sf2 file, in header order (the terminal 'EOS' record left out)."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise DataError(f"{path}: not a SoundFont 2 file (no RIFF 'sfbk' header)")
    smpl = shdr = None
    for cid, off, size in _chunks(data, 12, len(data)):
        if cid != b"LIST":
            continue
        kind = data[off : off + 4]
        for sub, soff, ssize in _chunks(data, off + 4, off + size):
            if kind == b"sdta" and sub == b"smpl":
                smpl = np.frombuffer(data, dtype="<i2", count=ssize // 2, offset=soff)
            elif kind == b"pdta" and sub == b"shdr":
                shdr = data[soff : soff + ssize]
    if smpl is None or shdr is None:
        raise DataError(f"{path}: no sample data (sdta/smpl) or sample headers (pdta/shdr)")
    out = []
    for i in range(len(shdr) // SHDR_BYTES - 1):  # the last header is the terminal record
        name, start, end, _, _, rate, root, cents, _, kind = struct.unpack_from(
            "<20sIIIIIBbHH", shdr, i * SHDR_BYTES
        )
        if kind & ROM or not 0 <= start < end <= len(smpl) or rate <= 0:
            continue
        pitch = (60 if root > 127 else root) + cents / 100.0  # 255: unpitched, by the spec
        audio = smpl[start:end].astype(np.float32) / 32768.0
        label = name.split(b"\0", 1)[0].decode("latin-1").strip()
        out.append(Sample(label, int(rate), float(pitch), audio, int(kind)))
    return out


def bundled_bank() -> Path | None:
    """The TimGM6mb bank inside the installed pretty_midi package, or None without it."""
    try:
        import pretty_midi
    except ImportError:
        return None
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    return path if path.is_file() else None
