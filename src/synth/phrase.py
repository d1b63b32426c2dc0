"""Phrases: several seconds of notes from one of the note synths, with a rhythm and a tune.

A phrase is a melody (a random walk over a scale) or an arpeggio (the scale's triad and octave,
up, down or up and down) starting on a random root, on a grid of `subdivision` steps per beat
at the phrase's tempo. Each note lasts 1..`max_steps` grid steps (shorter ones likelier),
sounds for a random fraction `gate` of them (above 1 it overlaps the next note), may be a rest
and carries a random accent. Everything but the labels (tempo and the voice's parameters) is
unlabelled randomness drawn from the batch's generator, one draw per phrase (or per group of
phrases, see `Randomness`), in a fixed order, so a dataset's bytes follow from its seed.

Rendering is vectorized: all notes of all phrases go through the voice synth as one batch of
notes, are gated with a raised-cosine release, and are overlap-added into their phrases with
one `index_add_` per chunk of notes.
"""

from __future__ import annotations

import math

import torch

from src.synth.base import Notes, Randomness, Synth, soft_limit_
from src.synth.fm import FMSynth
from src.synth.moog import MoogSynth
from src.synth.saw import SawSynth

__all__ = ["SCALES", "VOICES", "PhraseSynth", "reflect"]

# The voice a phrase is played with, by name (plain strings keep a dataset's JSON rebuildable).
VOICES: dict[str, type[Synth]] = {"saw": SawSynth, "fm": FMSynth, "moog": MoogSynth}
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "chromatic": tuple(range(12)),
}
ARPEGGIO = (0, 2, 4, 7)  # scale degrees of an arpeggio: the triad and the octave (7-note scales)
OLA_CHUNK = 256  # notes per overlap-add: bounds the index tensor to a few MB


def reflect(x: torch.Tensor, span: int) -> torch.Tensor:
    """Fold integers into [-span, span] by reflecting at the ends (a walk bounces back)."""
    if span <= 0:
        return torch.zeros_like(x)
    period = 4 * span
    y = torch.remainder(x + span, period)
    return torch.where(y <= 2 * span, y, period - y) - span


class PhraseSynth(Synth):
    """Melodies and arpeggios of one voice synth; labels are the tempo and the voice's
    parameters other than pitch (the notes' pitches come from the tune).

    Args:
        voice: the note synth, one of `VOICES` (moog's filter envelope follows each note's
            render buffer, not its gate).
        root_min, root_max: MIDI range of the phrase's first note (its tonic), drawn uniformly.
        scale: one of `SCALES`.
        span: scale degrees a melody may wander from the tonic, either way.
        arpeggio_prob: probability that a phrase is an arpeggio rather than a melody.
        subdivision: grid steps per beat (2 = eighth notes).
        max_steps: the longest note in grid steps; a note of k steps has weight max_steps+1-k.
        rest_prob: probability that a note (other than the first) is a rest.
        gate_min, gate_max: sounding length as a fraction of the note's steps, uniform.
        accent_db: each note is up to this much quieter than the phrase's level, uniform.
        release_ms: raised-cosine fade after a note's gate.
        max_notes: note slots per phrase; notes starting after the phrase's end are dropped.
    """

    def __init__(
        self,
        *,
        voice: str = "saw",
        root_min: int = 45,
        root_max: int = 69,
        scale: str = "major",
        span: int = 7,
        arpeggio_prob: float = 0.4,
        subdivision: int = 2,
        max_steps: int = 4,
        rest_prob: float = 0.15,
        gate_min: float = 0.5,
        gate_max: float = 1.4,
        accent_db: float = 6.0,
        release_ms: float = 30.0,
        max_notes: int = 32,
    ) -> None:
        if voice not in VOICES:
            raise ValueError(f"voice must be one of {sorted(VOICES)}, got {voice!r}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {sorted(SCALES)}, got {scale!r}")
        if not 0 <= root_min <= root_max <= 127:
            raise ValueError(f"need 0 <= root_min <= root_max <= 127, got {root_min}, {root_max}")
        if span < 0 or subdivision < 1 or max_steps < 1 or max_notes < 1:
            raise ValueError("span must be >= 0; subdivision, max_steps, max_notes >= 1")
        if not (0 <= arpeggio_prob <= 1 and 0 <= rest_prob < 1):
            raise ValueError("arpeggio_prob must be in [0, 1] and rest_prob in [0, 1)")
        if not 0 < gate_min <= gate_max:
            raise ValueError(f"need 0 < gate_min <= gate_max, got {gate_min}, {gate_max}")
        if accent_db < 0 or release_ms <= 0:
            raise ValueError("accent_db must be >= 0 and release_ms > 0")
        self.voice = VOICES[voice]()
        self.voice_name = voice
        self.root_min, self.root_max = int(root_min), int(root_max)
        self.scale = torch.tensor(SCALES[scale], dtype=torch.float64)
        self.span = int(span)
        self.arpeggio_prob = float(arpeggio_prob)
        self.subdivision = int(subdivision)
        self.max_steps = int(max_steps)
        self.rest_prob = float(rest_prob)
        self.gate_min, self.gate_max = float(gate_min), float(gate_max)
        self.accent_db = float(accent_db)
        self.release_s = float(release_ms) / 1000.0
        self.max_notes = int(max_notes)
        # The voice's pitch comes from the tune; its other parameters are the phrase's.
        self.param_names = ("tempo", *(n for n in self.voice.param_names if n != "pitch"))

    # --- the score ----------------------------------------------------------------------------
    def degrees(self, random: Randomness, batch: int) -> torch.Tensor:
        """(B, S) scale degrees relative to the tonic: melodies and arpeggios."""
        s = self.max_notes
        walk_u = random.rand(batch, s, dtype=torch.float64)
        mode_u = random.rand(batch, 2, dtype=torch.float64)
        # Melody: steps of -2..+2 degrees (repeats and small steps likelier), first note tonic.
        moves = torch.bucketize(walk_u, torch.tensor([0.1, 0.35, 0.65, 0.9], dtype=walk_u.dtype))
        moves = (moves - 2).to(torch.int64)
        moves[:, 0] = 0
        melody = reflect(moves.cumsum(dim=1), self.span)
        # Arpeggio: up, down or up-and-down over the triad and octave.
        i = torch.arange(s)
        tones = torch.tensor(ARPEGGIO, dtype=torch.int64)
        n = len(ARPEGGIO)
        up = tones[i % n]
        down = tones.flip(0)[i % n]
        bounce = tones[(n - 1) - reflect(i - (n - 1), n - 1).abs()]
        kind = (mode_u[:, 1] * 3).long().clamp_max(2)
        arp = torch.stack([up, down, bounce])[kind]
        return torch.where((mode_u[:, 0] < self.arpeggio_prob)[:, None], arp, melody)

    def pitches(self, degrees: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
        """Scale degrees -> MIDI notes above (or below) each phrase's tonic."""
        k = len(self.scale)
        octave = torch.div(degrees, k, rounding_mode="floor")
        semis = 12.0 * octave + self.scale[degrees - octave * k]
        return root[:, None] + semis

    def rhythm(self, random: Randomness, batch: int, tempo: torch.Tensor):
        """(B, S) onsets and sounding lengths in seconds, and which notes are rests."""
        s, m = self.max_notes, self.max_steps
        steps_u = random.rand(batch, s, dtype=torch.float64)
        gate_u = random.rand(batch, s, dtype=torch.float64)
        rest_u = random.rand(batch, s, dtype=torch.float64)
        weights = torch.arange(m, 0, -1, dtype=torch.float64)  # k steps: weight m + 1 - k
        edges = (weights.cumsum(0) / weights.sum())[:-1]
        steps = torch.bucketize(steps_u, edges).to(torch.float64) + 1.0
        step_s = 60.0 / tempo / self.subdivision  # (B,)
        ends = steps.cumsum(dim=1) * step_s[:, None]
        onsets = ends - steps * step_s[:, None]
        lengths = (
            steps * step_s[:, None] * (self.gate_min + (self.gate_max - self.gate_min) * gate_u)
        )
        rests = rest_u < self.rest_prob
        rests[:, 0] = False
        return onsets, lengths, rests

    # --- rendering ----------------------------------------------------------------------------
    def _render(self, notes: Notes) -> torch.Tensor:
        p, sr, n_samples, batch = notes.p, notes.sample_rate, notes.n_samples, notes.batch
        random, s = notes.random, self.max_notes
        root_u = random.rand(batch, dtype=torch.float64)
        accent_u = random.rand(batch, s, dtype=torch.float64)
        root = self.root_min + torch.floor(root_u * (self.root_max - self.root_min + 1))
        root = root.clamp_max(self.root_max)
        pitch = self.pitches(self.degrees(random, batch), root).clamp(0.0, 127.0)
        onsets, lengths, rests = self.rhythm(random, batch, p["tempo"])
        start = torch.round(onsets * sr).long()
        active = (~rests) & (start < n_samples)
        b_idx, s_idx = torch.nonzero(active, as_tuple=True)
        out = torch.zeros(batch * n_samples + 1, dtype=torch.float32)  # last: a sink
        if len(b_idx):
            sounding = lengths[b_idx, s_idx]
            n_note = min(n_samples, math.ceil((float(sounding.max()) + self.release_s) * sr))
            values = {k: v[b_idx] for k, v in p.items() if k != "tempo"}
            values["pitch"] = pitch[b_idx, s_idx]
            values["level"] = values["level"] - self.accent_db * accent_u[b_idx, s_idx]
            # Each note's start phases are its own draw, shared by a group's phrases.
            group = b_idx if random.groups is None else random.groups[b_idx]
            note_random = Randomness(random.generator, group * s + s_idx)
            audio = self.voice.render(values, sr, n_note, note_random)
            self._gate_(audio, sounding, sr)
            self._overlap_add_(
                out, audio, b_idx * n_samples + start[b_idx, s_idx], start[b_idx, s_idx], n_samples
            )
        phrase = out[:-1].view(batch, n_samples)
        return soft_limit_(phrase, 0.9, 1.0)

    def _gate_(self, audio: torch.Tensor, sounding: torch.Tensor, sr: int) -> None:
        """Fade each note out over the release after its sounding length (in place)."""
        t = torch.arange(audio.shape[1], dtype=torch.float32) / sr
        for a in range(0, len(audio), OLA_CHUNK):
            rest = (
                sounding[a : a + OLA_CHUNK, None].float() + self.release_s - t[None]
            ) / self.release_s
            gate = rest.clamp_(0.0, 1.0).mul_(math.pi).cos_().mul_(-0.5).add_(0.5)
            audio[a : a + OLA_CHUNK].mul_(gate)

    @staticmethod
    def _overlap_add_(
        out: torch.Tensor,
        audio: torch.Tensor,
        flat_start: torch.Tensor,
        start: torch.Tensor,
        n_samples: int,
    ) -> None:
        """Add each note at its start into the flat (B * n_samples + 1) buffer; samples past a
        phrase's end go to the sink at the end."""
        sink = out.shape[0] - 1
        t = torch.arange(audio.shape[1])
        for a in range(0, len(audio), OLA_CHUNK):
            idx = flat_start[a : a + OLA_CHUNK, None] + t[None]
            past = (start[a : a + OLA_CHUNK, None] + t[None]) >= n_samples
            out.index_add_(
                0, idx.masked_fill_(past, sink).flatten(), audio[a : a + OLA_CHUNK].flatten()
            )
