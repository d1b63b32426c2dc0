"""The codec's parts: time is the sequence axis, bitrates are computed, quantizers train, every
metric gives the known answer on signals built for it, and the baselines spend what they say."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from src.evaluation.codec_baselines import (
    ADPCM,
    MP3,
    Downsample,
    MuLawPCM,
    Silence,
    adpcm_available,
    at_bitrate,
    baselines,
    mp3_available,
)
from src.metrics.codec import (
    MAX_DB,
    CodeStats,
    WaveformMetrics,
    entropy_bits,
    log_mel_distance,
    stoi_available,
    table_bits,
    waveform_metrics,
)
from src.models.components.codec import ConvCodec
from src.models.components.quantizers import FiniteScalarQuantizer, ResidualVQ, VectorQuantizer
from src.synth.base import Randomness
from src.synth.noise import NoiseSynth

SR = 16000


def codec(kind: str = "rvq", seed: int = 0) -> ConvCodec:
    torch.manual_seed(seed)
    if kind == "rvq":
        q = ResidualVQ(8, n_stages=2, codebook_size=64)
        return ConvCodec((1, 4096), SR, [8, 16], [8, 4], 8, q)
    return ConvCodec((1, 4096), SR, [8, 16], [8, 4], 5, FiniteScalarQuantizer(5, [8, 8, 8, 5, 5]))


def burst(t: int = 4096, at: int = 1024, n: int = 1024, seed: int = 0) -> torch.Tensor:
    """(1, 1, t): silence with a noise burst at `at`, so shifted copies stay inside."""
    x = torch.zeros(1, 1, t)
    x[..., at : at + n] = 0.3 * torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return x


def trained_once(model: ConvCodec, x: torch.Tensor) -> ConvCodec:
    """One training forward (initialises and updates the EMA codebooks), then eval mode."""
    model.train()(x)
    return model.eval()


@pytest.mark.parametrize("kind", ["rvq", "fsq"])
def test_time_shift_gives_the_shifted_output(kind):
    model = trained_once(codec(kind), torch.randn(4, 1, 4096) * 0.3)
    x = burst()
    shift = 5 * model.hop
    with torch.no_grad():
        y, y_shifted = model(x)[0], model(torch.roll(x, shift, -1))[0]
    # Away from the edges (where zero padding differs) the output moves with the input.
    inner = slice(4 * model.hop, 4096 - shift - 4 * model.hop)
    inner_shifted = slice(inner.start + shift, inner.stop + shift)
    torch.testing.assert_close(y_shifted[..., inner_shifted], y[..., inner], atol=1e-5, rtol=0)
    # The codes move by whole frames.
    codes, codes_shifted = model.encode(x), model.encode(torch.roll(x, shift, -1))
    assert torch.equal(codes_shifted[..., 10:-10], torch.roll(codes, 5, -1)[..., 10:-10])


@pytest.mark.parametrize("kind", ["rvq", "fsq"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_an_items_output_does_not_depend_on_its_batch(kind, mode):
    model = trained_once(codec(kind), torch.randn(4, 1, 4096) * 0.3)
    x = torch.randn(6, 1, 4096) * 0.2
    x[3] *= 0.01  # a quiet item among loud ones
    outputs = []
    for batch in (x, x[3:4], x[[5, 3, 0]]):
        m = copy.deepcopy(model)  # a training forward updates the codebooks: same start each
        m.train(mode == "train")
        with torch.no_grad():
            y, q = m(batch)
        outputs.append((y, q.codes))
    (y_all, c_all), (y_one, c_one), (y_perm, c_perm) = outputs
    torch.testing.assert_close(y_one[0], y_all[3], atol=1e-6, rtol=0)
    torch.testing.assert_close(y_perm[1], y_all[3], atol=1e-6, rtol=0)
    assert torch.equal(c_one[0], c_all[3]) and torch.equal(c_perm[2], c_all[0])


def test_bitrate_is_frames_times_stages_times_bits():
    rvq, fsq = codec("rvq").eval(), codec("fsq").eval()
    assert rvq.hop == 32 and rvq.frame_rate == 500
    assert rvq.quantizer.codebook_sizes == (64, 64)
    assert rvq.bitrate_kbps == pytest.approx(500 * 2 * 6 / 1000)  # 6 kbps
    assert fsq.bitrate_kbps == pytest.approx(500 * math.log2(8 * 8 * 8 * 5 * 5) / 1000)
    # The codes are what the bitrate pays for: one per stage and frame, within the codebook,
    # and decoding them gives the forward pass's output.
    x = torch.randn(2, 1, 4000) * 0.2  # not a whole number of hops: padded, then cut
    for model in (rvq, fsq):
        codes = model.encode(x)
        assert codes.shape == (2, len(model.quantizer.codebook_sizes), 125)
        assert int(codes.min()) >= 0 and int(codes.max()) < max(model.quantizer.codebook_sizes)
        with torch.no_grad():
            torch.testing.assert_close(model.decode(codes, 4000), model(x)[0])


def test_odd_strides_and_mismatched_quantizers_are_refused():
    with pytest.raises(ValueError, match="even"):
        ConvCodec((1, 100), SR, [8], [5], 4, VectorQuantizer(4))
    with pytest.raises(ValueError, match="one level count per latent channel"):
        FiniteScalarQuantizer(3, [8, 8])


@pytest.mark.parametrize("kind", ["rvq", "fsq"])
def test_straight_through_gradient_reaches_the_encoder(kind):
    x = torch.randn(2, 1, 2048) * 0.2
    # Eval mode keeps the codebook fixed for the check below (training moves it after use).
    model = trained_once(codec(kind), x)
    y, q = model(x)
    # The forward value is quantized: the decoder sees codebook values, not the encoder's.
    with torch.no_grad():
        torch.testing.assert_close(q.z, model.quantizer.decode(q.codes), atol=1e-5, rtol=0)
    (y - x).square().mean().backward()
    first = model.encoder.net[0].weight.grad
    assert first is not None and first.abs().sum() > 0


def test_ema_codebook_moves_towards_its_frames_and_only_in_training():
    vq = VectorQuantizer(2, codebook_size=2, decay=0.5, dead_threshold=0.0)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    vq.embed_sum.copy_(vq.codebook)
    vq.initialised.fill_(True)
    z = torch.tensor([[1.0, 1.0], [1.2, 0.8], [9.0, 9.0]]).T[None]  # (1, D=2, F=3)
    vq.eval()(z)
    assert torch.equal(vq.codebook, torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    out = vq.train()(z)
    assert out.codes.tolist() == [[[0, 0, 1]]]
    # counts: 0.5*1 + 0.5*[2, 1]; sums: 0.5*codebook + 0.5*[[2.2, 1.8], [9, 9]]
    torch.testing.assert_close(vq.cluster_size, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(vq.embed_sum, torch.tensor([[1.1, 0.9], [9.5, 9.5]]))
    n, eps = 2.5, vq.eps
    smoothed = (torch.tensor([1.5, 1.0]) + eps) / (n + 2 * eps) * n
    torch.testing.assert_close(vq.codebook, vq.embed_sum / smoothed[:, None])
    # The commitment loss pulls the encoder to the codes it was given (before the update).
    expected = 0.25 * ((z[0].T - torch.tensor([[0.0, 0.0]] * 2 + [[10.0, 10.0]])) ** 2).mean()
    torch.testing.assert_close(out.loss, expected)


def test_unused_codes_are_restarted_at_batch_frames():
    torch.manual_seed(0)
    vq = VectorQuantizer(2, codebook_size=4, decay=0.5, dead_threshold=0.6)
    z = torch.randn(1, 2, 64) * 0.01 + 5.0  # every frame near (5, 5)
    vq.train()(z)  # initialised from the batch
    vq.codebook[3] = -100.0  # far away: never chosen
    vq(z)
    assert vq.codebook[3].sub(5.0).abs().max() < 0.1  # restarted at one of the frames


def sine(freq: float = 440.0, amp: float = 0.5, n: int = SR) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).float()


def test_metrics_of_identical_signals_are_maximal_not_infinite():
    x = torch.stack([sine(), sine(1000, 0.01), torch.zeros(SR)])
    m = waveform_metrics(x, x, SR, stoi=stoi_available())
    assert m["snr_db"][:2].tolist() == [MAX_DB, MAX_DB]
    assert m["si_sdr_db"][:2].tolist() == [MAX_DB, MAX_DB]
    assert m["psnr_db"].tolist() == [MAX_DB] * 3
    assert m["mse"].tolist() == [0.0] * 3 and m["mrstft"][:2].tolist() == [0.0, 0.0]
    # A silent original has no SNR: NaN, left out of the means.
    assert math.isnan(m["snr_db"][2]) and math.isnan(m["si_sdr_db"][2])
    wave = WaveformMetrics(["snr_db", "mse"])
    wave.update(m)
    overall, _ = wave.compute()
    assert float(overall["snr_db"]) == MAX_DB and float(overall["mse"]) == 0.0
    if stoi_available():
        assert m["stoi"][:2].tolist() == pytest.approx([1.0, 1.0], abs=1e-4)


def test_a_known_noise_level_gives_the_known_snr_psnr_and_mse():
    g = torch.Generator().manual_seed(0)
    x = sine(amp=0.5).expand(4, SR)
    noise = torch.randn(4, SR, generator=g)
    noise = noise / noise.square().mean(1, keepdim=True).sqrt() * 0.05  # RMS exactly 0.05
    m = waveform_metrics(x + noise, x, SR)
    signal_power = x.double().square().mean(1)  # 0.125
    expected = 10 * torch.log10(signal_power / 0.05**2)
    torch.testing.assert_close(m["snr_db"].double(), expected, atol=0.01, rtol=0)  # 16.99 dB
    torch.testing.assert_close(m["mse"], torch.full((4,), 0.0025), atol=1e-6, rtol=0)
    psnr = 10 * math.log10(2.0**2 / 0.0025)  # full scale range 2
    torch.testing.assert_close(m["psnr_db"], torch.full((4,), psnr), atol=0.01, rtol=0)
    # Scaling the reconstruction changes SNR but not SI-SDR.
    scaled = waveform_metrics(0.5 * (x + noise), x, SR)
    assert float(scaled["snr_db"].mean()) < 7.0
    torch.testing.assert_close(scaled["si_sdr_db"], m["si_sdr_db"], atol=1e-3, rtol=0)


def test_per_group_means_and_heldout_exclusion():
    wave = WaveformMetrics(["snr_db"], n_groups=3)
    wave.update(
        {"snr_db": torch.tensor([10.0, 20.0, 30.0, float("nan")])}, torch.tensor([0, 0, 1, 2])
    )
    overall, per_group = wave.compute(include=[0])
    assert float(overall["snr_db"]) == 15.0
    assert per_group["snr_db"][:2].tolist() == [15.0, 30.0] and math.isnan(per_group["snr_db"][2])


def test_code_statistics():
    stats = CodeStats([4, 8])
    codes = torch.stack([torch.arange(4).repeat(4), torch.zeros(16, dtype=torch.long)])[None]
    stats.update(codes)  # stage 0: uniform over 4 codes; stage 1: always code 0
    out = stats.compute()
    assert float(out["entropy_bits"]) == pytest.approx(2.0)
    assert float(out["usage"]) == pytest.approx((4 / 4 + 1 / 8) / 2)
    assert float(out["perplexity"]) == pytest.approx((4 + 1) / 2)
    assert entropy_bits(torch.zeros(1, 3)).tolist() == [0.0]


def test_baselines_spend_the_bitrate_they_state():
    x = torch.stack([sine(), sine(220, 0.2)])
    assert MuLawPCM("m", "f", SR * 4 / 1000, bits=4).kbps == 64.0
    pcm8 = MuLawPCM("m", "f", 128.0, bits=8)(x, SR)
    # 256 mu-law levels: distinct values in the output are at most 256.
    assert len(torch.unique(pcm8)) <= 256
    assert float(waveform_metrics(pcm8, x, SR)["snr_db"].min()) > 30
    down = Downsample("d", "f", 32.0, rate=4000)(x, SR)
    assert down.shape == x.shape
    assert float(waveform_metrics(down, x, SR)["snr_db"].min()) > 20  # both tones below 2 kHz
    assert float(waveform_metrics(Silence("s", "f", 0.0)(x, SR), x, SR)["snr_db"].max()) == 0.0


def test_coded_bits_use_tables_fitted_elsewhere():
    """Coding with another histogram's add-one table costs the cross-entropy, never less than
    the codes' own entropy; padded columns beyond a stage's size get no probability."""
    counts = torch.tensor([[2.0, 2.0, 0.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
    flat = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    bits = table_bits(counts, flat, sizes=[4, 2])
    # stage 0: table (2, 2, 2, 2)/8 -> 2 bits; stage 1: 2 codes, table (1, 1)/2 -> 1 bit
    assert bits.tolist() == pytest.approx([2.0, 1.0])
    own = table_bits(counts, counts * 1000, sizes=[4, 2])
    assert own.tolist() == pytest.approx(entropy_bits(counts).tolist(), abs=1e-2)
    assert (bits >= entropy_bits(counts)).all()
    stats = CodeStats([4, 2])
    stats.update(torch.tensor([[[0, 1, 0, 1], [0, 0, 0, 0]]]))
    assert float(stats.compute(flat)["table_bits"]) == pytest.approx(2.0 + 1.0)


def test_log_mel_distance_reads_a_gain_in_db():
    """A broadband signal and its copy 6.02 dB louder differ by 6.02 dB in every band."""
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(2, SR, generator=g)
    assert log_mel_distance(x, x, SR).tolist() == [0.0, 0.0]
    assert log_mel_distance(2 * x, x, SR).tolist() == pytest.approx([6.0206] * 2, abs=1e-3)
    m = waveform_metrics(2 * x, x, SR)
    assert m["logmel_db"].tolist() == pytest.approx([6.0206] * 2, abs=1e-3)


def test_baselines_at_a_models_bitrate_spend_exactly_it():
    names = {b.name: b for b in at_bitrate(6.0, SR)}
    mulaw = [b for b in names.values() if isinstance(b, Downsample)]
    assert {b.name for b in mulaw} == {"down_1500Hz_4bit", "down_1000Hz_6bit", "down_750Hz_8bit"}
    assert all(b.rate * b.bits == 6000 and b.kbps == 6.0 for b in mulaw)
    assert [b.name for b in at_bitrate(6.8, SR) if isinstance(b, Downsample)] == [
        "down_1700Hz_4bit",
        "down_850Hz_8bit",  # 6800 / 6 is no whole rate
    ]
    listed = [b.name for b in baselines(SR, mp3_kbps=None, at_kbps=[6.0, 6.0])]
    assert len(listed) == len(set(listed)) and "down_1500Hz_4bit" in listed
    x = torch.stack([sine(220), sine(330, 0.2)])
    y = names["down_1500Hz_4bit"](x, SR)
    assert y.shape == x.shape and float(waveform_metrics(y, x, SR)["snr_db"].min()) > 5


@pytest.mark.skipif(not adpcm_available(), reason="this libsndfile has no NMS ADPCM")
def test_two_bit_adpcm_at_a_models_bitrate():
    adpcm = at_bitrate(6.0, SR)[-1]
    assert isinstance(adpcm, ADPCM) and adpcm.rate == 3000
    x = torch.stack([sine(220), sine(330, 0.2)])
    y = adpcm(x, SR)
    assert y.shape == x.shape
    assert 6.0 <= adpcm.kbps <= 6.0 * 1.1  # 2 bits a sample, plus the block headers
    assert float(waveform_metrics(y, x, SR)["snr_db"].min()) > 8  # tones well below 1.5 kHz


@pytest.mark.skipif(not mp3_available(), reason="lameenc not installed (the codec extra)")
def test_mp3_bitrate_is_measured_and_its_delay_removed():
    x = torch.stack([sine(), sine(220, 0.2)])
    mp3 = MP3("mp3", "MP3", 32.0, nominal_kbps=32)
    y = mp3(x, SR)
    assert y.shape == x.shape
    assert 32.0 <= mp3.kbps <= 32.0 * 1.2  # measured from the bytes: frames plus the tail
    assert float(waveform_metrics(y, x, SR)["snr_db"].min()) > 10  # aligned, not shifted


def test_noise_colours_have_their_spectral_slopes():
    synth = NoiseSynth()
    n, t = 8, SR
    values = {
        "color": torch.tensor([0.0, 1.0, 2.0] * 2 + [0.0, 0.0]),
        "level": torch.full((n,), -20.0),
        "bursts": torch.tensor([0.0] * 6 + [4.0, 0.0]),
    }
    audio = synth.render(values, SR, t, Randomness(torch.Generator().manual_seed(0)))
    rms_db = 20 * torch.log10(audio.square().mean(1).sqrt())
    # The level is the RMS (bursts' peaks may be soft-limited a little).
    torch.testing.assert_close(rms_db, torch.full((n,), -20.0), atol=0.5, rtol=0)
    torch.testing.assert_close(rms_db[:6], torch.full((6,), -20.0), atol=0.01, rtol=0)
    power = torch.fft.rfft(audio.double()).abs().square()
    freqs = torch.fft.rfftfreq(t, 1 / SR)
    band = lambda lo, hi: power[:, (freqs >= lo) & (freqs < hi)].mean(1)  # noqa: E731
    slope_db = 10 * torch.log10(band(4000, 5000) / band(400, 500))  # one decade
    torch.testing.assert_close(
        slope_db[:6], torch.tensor([0.0, -10.0, -20.0] * 2).double(), atol=1.5, rtol=0
    )
    # Bursts: most of the note is near silence; steady noise is not.
    env = audio.abs().unfold(1, 320, 320).amax(-1)  # 20 ms peaks
    quiet = (env < 0.05 * env.amax(1, keepdim=True)).float().mean(1)
    assert quiet[6] > 0.5 and quiet[7] < 0.1


def test_codec_report_compares_each_model_at_its_bitrate_by_three_standard_errors(monkeypatch):
    """scripts/codec_report.py's verdicts from fake run records and baseline rows."""
    from src.paths import PROJECT_ROOT
    from tests.test_scripts import load_script

    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "scripts"))
    script = load_script("codec_report")

    def run(snr: float, logmel: float) -> dict:
        return {"kbps": 6.0, "metrics": {"test/snr_db": snr, "test/logmel_db": logmel}}

    results = {"codec_5k": [run(4.3, 9.0), run(4.5, 9.1), run(4.7, 8.9)]}
    base = [
        {"name": "down_1500Hz_4bit", "family": "f", "nominal_kbps": 6.0,
         "metrics": {"snr_db": 7.0, "logmel_db": 9.05}},
        {"name": "mp3_8k", "family": "MP3", "nominal_kbps": 8.0,
         "metrics": {"snr_db": 13.0, "logmel_db": 5.0}},
    ]  # fmt: skip
    _cols, rows = script.at_bitrate_rows(results, base)
    assert len(rows) == 1 and rows[0][2] == "down_1500Hz_4bit (f)"  # only the equal bitrate
    assert rows[0][3].startswith("+2.50, t = 21.7: baseline better")  # se = 0.2 / sqrt(3)
    assert rows[0][4].endswith("within noise")  # 9.05 vs 9.0 ± 0.1
    model = [10.0, 10.1, 9.9]
    assert script.compare(model, 8.0, higher_is_better=False).endswith("baseline better")
    assert script.compare(model, 12.0, higher_is_better=False).endswith("model better")
    assert script.compare(model, 12.0, higher_is_better=True).endswith("baseline better")
    assert script.compare(model, 10.1, higher_is_better=True).endswith("within noise")
