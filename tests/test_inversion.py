"""Spectrogram inversion of stored images, measured against the stored waveforms.

Thresholds, from what the chain can reach on these notes (docs/audio_eval.md): Griffin-Lim on
the exact STFT magnitudes reaches a spectral convergence (SC) of about 0.12; a 32-row mel image
of 129 STFT bins loses the structure inside each row, and inverting exact (unquantised) mel
powers gives about 0.25-0.4; the 8-bit image measures 0.35-0.40 (median), 11-13 dB
log-spectral distance (LSD) and re-images within 5-8 pixel levels (1.5-2.5 dB). An unrelated
note of the same dataset scores SC ~1.0 and LSD ~21 dB. The test asks for a median SC below
0.5, a median LSD below 15 dB, at least 0.4 SC and 4 dB LSD better than pairing each
inversion with another record, and a median re-imaging error below 12 levels (3.8 dB).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.audio.io import read_audio
from src.data.vimh import VIMHDataset
from src.generation.rebuild import imager_from_info
from src.imaging import SpectrogramImager
from src.imaging.inversion import SpectrogramInverter
from src.metrics.audio import log_spectral_distance, spectral_convergence, stft_power
from tests.helpers.synth_data import make_saw_dataset


@pytest.fixture(scope="module")
def saw(tmp_path_factory) -> VIMHDataset:
    return VIMHDataset(make_saw_dataset(tmp_path_factory.mktemp("saw"), size=400, seed=3))


def quality(audio: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p, r = stft_power(audio, 256), stft_power(reference, 256)
    return spectral_convergence(p.sqrt(), r.sqrt()), log_spectral_distance(p, r)


def test_inversion_of_stored_images_sounds_like_the_stored_notes(saw, one_thread):
    imager = imager_from_info(saw.info)
    images = torch.from_numpy(np.array(saw["test"].images))
    stored = torch.from_numpy(np.array(saw.audio("test")))
    audio = SpectrogramInverter(imager)(images)
    assert audio.shape == stored.shape and torch.isfinite(audio).all()
    sc, lsd = quality(audio, stored)
    sc_other, lsd_other = quality(audio.roll(1, 0), stored)
    assert sc.median() < 0.5 and lsd.median() < 15, (sc.median(), lsd.median())
    assert sc_other.median() - sc.median() > 0.4
    assert lsd_other.median() - lsd.median() > 4
    error = (imager(audio).float() - images.float()).abs().mean(dim=(1, 2, 3))
    assert error.median() < 12, error.median()
    # Deterministic (zero initial phase); one image in, one note out. Griffin-Lim amplifies
    # float rounding, so a record inverted alone is as good as in a batch, not bit-equal.
    again = SpectrogramInverter(imager)(images[:4])
    assert torch.equal(again, SpectrogramInverter(imager)(images[:4]))
    one = SpectrogramInverter(imager)(images[0])
    assert one.shape == stored[0].shape
    assert quality(one[None], stored[:1])[0] < sc[0] + 0.05


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_other_scales_and_channel_choice(saw, one_thread, scale):
    """A power channel on any row scale, beside a phase channel, is found and inverted."""
    cfg = imager_from_info(saw.info).config()
    cfg["channels"] = [
        {"kind": "ifreq", "scale": "mel", "n_fft": 256},
        {"kind": "power", "scale": scale, "n_fft": 512},
    ]
    imager = SpectrogramImager(**cfg)
    stored = torch.from_numpy(np.array(saw.audio("test")[:8]))
    inverter = SpectrogramInverter(imager, n_iter=16)
    assert inverter.channel == 1
    audio = inverter(imager(stored))
    sc, _ = quality(audio, stored)
    sc_other, _ = quality(audio.roll(1, 0), stored)
    assert sc.median() < 0.75 and sc_other.median() - sc.median() > 0.2
    with pytest.raises(ValueError, match="only power channels"):
        SpectrogramInverter(imager, channel=0)


def test_viewer_writes_what_the_network_saw(saw, tmp_path, monkeypatch, one_thread):
    """The viewer's inverted WAVs sound like the records they were made from: spectrally
    much closer to their own records' stored notes than to other records'."""
    from tests.test_scripts import load_script

    viewer = load_script("view_vimh")
    argv = ["view_vimh.py", str(saw.root), "-n", "4", "--wav", "4", "--invert", "4"]
    monkeypatch.setattr("sys.argv", [*argv, "--gl-iter", "16", "--out", str(tmp_path)])
    viewer.main()
    assert len(list(tmp_path.glob("*.png"))) == 1
    inverted = sorted(tmp_path.glob("*_inverted.wav"))
    stored = sorted(p for p in tmp_path.glob("*.wav") if p not in inverted)
    assert len(inverted) == len(stored) == 4
    # Named <dataset>_<split>_<record>_<labels>[_inverted].wav: pair them by record.
    assert [p.name.split("_")[:-1] for p in stored] == [p.name.split("_")[:-2] for p in inverted]
    heard = torch.stack([torch.from_numpy(read_audio(p)[0]) for p in inverted])
    notes = torch.stack([torch.from_numpy(read_audio(p)[0]) for p in stored])
    assert heard.shape == notes.shape
    sc, lsd = quality(heard, notes)
    sc_other, lsd_other = quality(heard.roll(1, 0), notes)  # paired with another record
    # As for the inverter alone (module docstring); medians, since two records may differ
    # only in decay and then sound alike.
    assert sc.median() < 0.5 and lsd.median() < 15, (sc, lsd)
    assert sc_other.median() - sc.median() > 0.4, (sc, sc_other)
    assert lsd_other.median() - lsd.median() > 4, (lsd, lsd_other)
