"""Tests for the spectrogram imager: geometry, level calibration, phase channels, config."""

from __future__ import annotations

import itertools
import json
import logging
import math
import pickle

import pytest
import torch

from src.imaging import ChannelSpec, SpectrogramImager, choose_hop
from src.imaging.filters import log_fbanks

SR = 8000
N = 8000


def make(channels=None, height=32, width=32, n_samples=N, **kw) -> SpectrogramImager:
    return SpectrogramImager(
        height=height,
        width=width,
        sample_rate=SR,
        n_samples=n_samples,
        channels=channels if channels is not None else [{}],
        **kw,
    )


def sine(freq: float, amp: float = 1.0, n: int = N, phase: float = 0.3) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t + phase)).to(torch.float32)[None]


ALL_KINDS = [
    {"kind": "power"},
    {"kind": "ifreq"},
    {"kind": "group_delay"},
    {"kind": "modulation"},
]


@pytest.mark.parametrize(
    ("height", "width", "channels"),
    [
        (32, 32, [{}]),
        (64, 16, [{}]),
        (16, 64, [{"scale": "linear"}, {"n_fft": 512}]),
        (32, 32, [dict(c, scale="log") for c in ALL_KINDS]),
        (24, 40, [{}, {"kind": "ifreq", "n_fft": 128}, {"kind": "modulation", "scale": "linear"}]),
    ],
)
def test_output_shape_and_dtype(height, width, channels):
    im = make(channels, height=height, width=width, f_min=30.0)
    x = torch.randn(3, N) * 0.1
    out = im(x)
    assert out.shape == (3, len(channels), height, width)
    assert out.dtype == torch.uint8
    flt = im.to_float(x)
    assert flt.shape == out.shape and flt.dtype == torch.float32
    assert len(im.channel_labels) == len(channels)
    # Extra leading batch dimensions are kept.
    assert im(x.reshape(3, 1, N)).shape == (3, 1, len(channels), height, width)


@pytest.mark.parametrize(
    ("n_samples", "width"),
    [
        (8000, 32),
        (8000, 100),
        (16000, 64),
        (16000, 128),
        (22050, 128),
        (1000, 31),
        (4410, 40),
        (7998, 32),
        (8000, 2),
    ],
)
def test_exactly_width_frames_covering_the_note(n_samples, width):
    hop = choose_hop(n_samples, width)
    # Centres 0, hop, ..., (W-1) hop: at most one hop of note after the last centre.
    assert 0 <= n_samples - (width - 1) * hop <= hop
    # Same frame count as torch.stft(center=True), except that torch adds a frame centred
    # one past the last sample when W * hop == n_samples.
    z = torch.stft(
        torch.zeros(1, n_samples),
        256,
        hop,
        window=torch.hann_window(256),
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    assert z.shape[-1] == width + (width * hop == n_samples)
    im = make(n_samples=n_samples, width=width, height=16)
    assert im(torch.zeros(2, n_samples)).shape[-1] == width


def test_unreachable_width_is_rejected():
    with pytest.raises(ValueError, match="width=60 is not reachable"):
        choose_hop(100, 60)
    with pytest.raises(ValueError, match="width"):
        make(width=1)


@pytest.mark.parametrize("n_fft", [64, 256, 1024, 16384])
def test_framing_matches_plain_padded_stft(n_fft):
    """The edge/interior split must equal one centred, zero-padded torch.stft."""
    n_samples = 4000 if n_fft < 16384 else 8000
    im = make([{"n_fft": n_fft, "scale": "linear"}], height=16, width=20, n_samples=n_samples)
    x = torch.randn(2, n_samples)
    window = torch.hann_window(n_fft)
    z = torch.stft(
        x,
        n_fft,
        im.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = z.abs().square().transpose(1, 2) @ getattr(im, f"pfb_{n_fft}")[::2]
    ref = 10 * torch.log10(power.clamp_min(im._tiny))
    got = im.to_float(x)[:, 0].transpose(1, 2)
    torch.testing.assert_close(got, ref, atol=1e-3, rtol=0)


def peak_db(im: SpectrogramImager, x: torch.Tensor, channel: int = 0) -> tuple[float, int]:
    col = im.to_float(x)[0, channel, :, im.width // 2]
    return float(col.max()), int(col.argmax())


@pytest.mark.parametrize("scale", ["mel", "linear", "log"])
@pytest.mark.parametrize("n_fft", [128, 256, 512])
def test_full_scale_sine_reads_0db_and_level_tracks(scale, n_fft):
    im = make([{"scale": scale, "n_fft": n_fft}], f_min=40.0)
    # At a filter centre the calibration is exact...
    centre = float(im.frequencies()[10])
    db, _ = peak_db(im, sine(centre))
    assert abs(db) < 0.3
    # ...and at an arbitrary bin centre the peak row is within the triangle scalloping.
    db_full, row = peak_db(im, sine(1000.0))
    assert -3.2 < db_full < 0.6
    assert im(sine(1000.0))[0, 0, row, im.width // 2] >= 245
    db_quiet, row_quiet = peak_db(im, sine(1000.0, amp=0.1))
    assert row_quiet == row
    assert abs((db_full - db_quiet) - 20.0) < 0.1


@pytest.mark.parametrize("scale", ["mel", "linear", "log"])
def test_peak_row_moves_up_with_frequency(scale):
    im = make([{"scale": scale}], f_min=40.0)
    rows = [peak_db(im, sine(f))[1] for f in (100.0, 300.0, 700.0, 1500.0, 3000.0)]
    assert all(a < b for a, b in itertools.pairwise(rows)), rows  # row 0 = lowest frequency
    freqs = im.frequencies()
    assert torch.all(freqs[:-1] < freqs[1:])


def test_silence_maps_to_zero_and_neutral():
    im = make([dict(c) for c in ALL_KINDS])
    out = im(torch.zeros(2, N))
    assert torch.all(out[:, 0] == 0)  # power
    assert torch.all(out[:, 1] == 128)  # ifreq
    assert torch.all(out[:, 2] == 128)  # group delay
    assert torch.all(out[:, 3] == 0)  # modulation


@pytest.mark.parametrize("n_fft", [64, 256, 2048])
def test_log_scale_has_no_empty_filter(n_fft):
    fb = log_fbanks(n_fft // 2 + 1, 20.0, 4000.0, 128, SR)
    assert fb.shape == (n_fft // 2 + 1, 128)
    assert torch.all(fb.amax(dim=0) > 0)
    make([{"scale": "log", "n_fft": n_fft}], height=128, f_min=20.0)  # must not raise


def test_log_scale_requires_positive_f_min():
    with pytest.raises(ValueError, match="f_min"):
        make([{"scale": "log"}], f_min=0.0)


def test_config_roundtrip_is_exact():
    im = make(
        [ChannelSpec("power", "log", 512), {"kind": "ifreq"}, {"kind": "modulation"}],
        height=24,
        width=16,
        f_min=50.0,
        f_max=3500.0,
        db_min=-90.0,
        db_max=6.0,
        window="hamming",
    )
    cfg = json.loads(json.dumps(im.config()))
    again = SpectrogramImager(**cfg)
    assert again.config() == im.config()
    assert again.channel_labels == ["power_log_512", "ifreq_mel_256", "modulation_mel_256"]
    x = torch.randn(2, N) * 0.3
    assert torch.equal(im(x), again(x))


@pytest.mark.parametrize("offset", [-0.25, 0.2])
def test_ifreq_sign_off_bin_centre(offset):
    n_fft = 256
    im = make([{}, {"kind": "ifreq", "n_fft": n_fft}])
    x = sine((40 + offset) * SR / n_fft)
    _, row = peak_db(im, x)
    value = float(im.to_float(x)[0, 1, row, 16])
    assert value == pytest.approx(offset, abs=0.02)
    pixel = int(im(x)[0, 1, row, 16])
    assert (pixel > 128) if offset > 0 else (pixel < 128)


def test_group_delay_of_an_impulse():
    n_fft = 256
    im = make([{}, {"kind": "group_delay", "n_fft": n_fft}])
    x = torch.zeros(1, N)
    x[0, 16 * im.hop_length - 40] = 1.0  # 40 samples before frame 16's centre
    gd = im.to_float(x)[0, 1, :, 16]
    torch.testing.assert_close(gd, torch.full_like(gd, -40 / n_fft), atol=1e-3, rtol=0)


def test_modulation_peaks_at_the_am_rate():
    im = make([{}, {"kind": "modulation"}])
    t = torch.arange(N) / SR
    x = (torch.sin(2 * math.pi * 1000 * t) * (0.55 + 0.45 * torch.sin(2 * math.pi * 4 * t)))[None]
    _, row = peak_db(im, x)
    mod = im.to_float(x)[0, 1, row]
    frame_rate = SR / im.hop_length
    col = round(4.0 / (frame_rate / 2) * (im.width - 1))  # columns span 0..frame_rate/2
    assert abs(int(mod[2:].argmax()) + 2 - col) <= 1


def test_forward_is_the_documented_quantisation_of_to_float():
    im = make([dict(c) for c in ALL_KINDS])
    x = torch.randn(2, N) * 0.2
    flt = im.to_float(x)
    out = im(x).to(torch.int32)
    for c, (lo, hi) in enumerate(im.value_ranges):
        v = flt[:, c]
        if c in (1, 2):
            expect = torch.floor(128 + 128 * v / hi + 0.5).clamp(0, 255)
        else:
            expect = torch.floor((v - lo) / (hi - lo) * 255 + 0.5).clamp(0, 255)
        assert (out[:, c] - expect).abs().max() <= 1
    assert im.spec_min == -80.0 and im.spec_max == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": [{"kind": "phase"}]}, "kind"),
        ({"channels": [{"scale": "bark"}]}, "scale"),
        ({"channels": [{"n_fft": 255}]}, "n_fft"),
        ({"channels": [{"hop": 3}]}, "channels\\[0\\]"),
        ({"channels": []}, "channels"),
        ({"channels": [{}, {}]}, "unique"),
        ({"height": 0}, "height"),
        ({"width": -3}, "width"),
        ({"n_samples": 0}, "n_samples"),
        ({"f_max": 5000.0}, "f_max"),
        ({"f_min": 4000.0}, "f_min"),
        ({"db_min": 0.0}, "db_min"),
        ({"window": "kaiser"}, "window"),
        ({"channels": [{"scale": "linear", "n_fft": 64}], "height": 100}, "without any STFT bin"),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, match):
    args = {"height": 32, "width": 32, "sample_rate": SR, "n_samples": N, "channels": [{}]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SpectrogramImager(**args)


def test_linear_oversampling_warns(caplog):
    with caplog.at_level(logging.WARNING):
        make([{"scale": "linear", "n_fft": 64}], height=40)
    assert "exceeds the" in caplog.text


def test_wrong_audio_length_is_rejected():
    with pytest.raises(ValueError, match="n_samples"):
        make()(torch.zeros(2, N - 1))


@pytest.mark.parametrize(("n_fft", "n_samples", "width"), [(64, 4000, 20), (1024, 4000, 20)])
def test_phase_channels_match_a_plain_padded_reference(n_fft, n_samples, width):
    """Edge/interior splitting of the lagged STFTs must not change ifreq or group delay."""
    im = make(
        [{"kind": "ifreq", "n_fft": n_fft}, {"kind": "group_delay", "n_fft": n_fft}],
        height=16,
        width=width,
        n_samples=n_samples,
        db_min=-200.0,
    )
    x = torch.randn(2, n_samples)
    hop, pad = im.hop_length, 3 * n_fft
    padded = torch.nn.functional.pad(x, (pad, pad))

    def stft(lag: int) -> torch.Tensor:  # frames centred on t * hop + lag
        z = torch.stft(
            padded[:, pad - n_fft // 2 + lag :],
            n_fft,
            hop,
            window=torch.hann_window(n_fft),
            center=False,
            return_complex=True,
        )
        return z[..., :width].transpose(1, 2)

    def weighted_angle(c: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        out = (torch.view_as_real(c).reshape(2, width, -1) @ fb).unflatten(-1, (16, 2))
        return torch.atan2(out[..., 1], out[..., 0]) / (2 * math.pi)

    z = stft(0)
    lagged = stft(n_fft // 2) * stft(-(n_fft // 2)).conj()
    ref_if = weighted_angle(lagged, getattr(im, f"ifb_{n_fft}"))
    ref_gd = -weighted_angle(z[..., 1:] * z[..., :-1].conj(), getattr(im, f"gfb_{n_fft}"))
    got = im.to_float(x).transpose(-1, -2)
    for value, ref in ((got[:, 0], ref_if), (got[:, 1], ref_gd)):
        diff = (value - ref).abs()
        assert torch.minimum(diff, 1 - diff).max() < 1e-5  # angles compare modulo one turn


def test_default_channel_batch_equals_its_chunks(one_thread):
    """A large batch (the shape of a generation batch) images each record as it would alone
    or in a small batch: batching is free of cross-record effects. (Speed is measured by
    scripts/bench_generate.py, recorded in docs/performance.md, not asserted here.)"""
    im = make()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, N, generator=g) * 0.1 * torch.rand(512, 1, generator=g)
    whole = im(x)
    assert whole.shape == (512, 1, 32, 32) and whole.dtype == torch.uint8
    parts = torch.cat([im(c) for c in x.split(96)])
    one = im(x[300:301])
    for other in (parts, one):
        ref = whole[300:301] if other is one else whole
        diff = (ref.int() - other.int()).abs()
        # float sums in another order may move a pixel across a rounding boundary, no more
        assert diff.max() <= 1 and (diff > 0).float().mean() < 1e-3
    assert whole.float().std() > 10  # real images, not a constant


def test_imager_pickles_for_dataloader_workers():
    im = make([{}, {"kind": "ifreq", "scale": "log"}], f_min=40.0, window="rect")
    again = pickle.loads(pickle.dumps(im))
    x = torch.randn(2, N)
    assert torch.equal(im(x), again(x))
