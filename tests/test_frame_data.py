"""Frame windows for the sequence task: slicing at record boundaries, both loading paths, the
phrase generator's records, and the WAV-folder source on WAVs written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.data.frames import FrameDataModule, frame_facts
from src.data.vimh import VIMHDataset
from src.data.wav_frames import WavFrameDataModule, assign_files
from src.data.windows import window_index, window_starts
from src.errors import ConfigError
from src.synth.base import Randomness
from src.synth.phrase import PhraseSynth
from src.utils.config import compose_config
from tests.helpers.sequence import write_wavs

WINDOWS = {"context": 8, "horizon": 4, "stride": 4, "batch_size": 16}


def test_windows_stay_inside_their_record_and_cover_it():
    assert window_starts(32, 12, 4).tolist() == [0, 4, 8, 12, 16, 20]
    assert window_starts(30, 12, 8).tolist() == [0, 8, 16, 18]  # the last one ends at the end
    assert window_starts(12, 12, 5).tolist() == [0]
    index = window_index(3, 30, 12, 8)
    assert index.shape == (12, 2)
    assert index[:, 0].tolist() == [0] * 4 + [1] * 4 + [2] * 4  # record-major
    assert (index[:, 1] >= 0).all() and (index[:, 1] + 12 <= 30).all()  # never across records
    for r in range(3):  # every frame of every record is in some window
        starts = index[index[:, 0] == r, 1]
        covered = np.zeros(30, bool)
        for s in starts:
            covered[s : s + 12] = True
        assert covered.all()
    with pytest.raises(ConfigError, match="fewer than a window"):
        window_starts(10, 12, 4)


def frames_of(folder, split="test") -> np.ndarray:
    """(N, W, H) uint8 frames of a split, straight from the file."""
    return VIMHDataset(folder)[split].images[:, 0].transpose(0, 2, 1)


@pytest.mark.parametrize("in_memory", [True, False])
def test_batches_are_the_records_frames_in_both_paths(one_thread, phrases, in_memory):
    dm = FrameDataModule(phrases, in_memory=in_memory, **WINDOWS)
    dm.setup()
    assert dm.use_memory is in_memory
    frames = frames_of(phrases)
    windows = dm.windows("test")
    seen = 0
    for x, _ in dm.loader("test", shuffle=False):
        for i in range(len(x)):
            record, start = windows[seen + i]
            assert torch.equal(x[i], torch.from_numpy(frames[record, start : start + 12].copy()))
        seen += len(x)
    assert seen == len(windows) == dm.splits["test"].n_records * len(window_starts(32, 12, 4))
    # A shuffled epoch: the same batches from memory and from the files for the same order
    # and seed; the streaming path's own (block) order visits the same windows once each.
    uniform = {**WINDOWS, "shuffle_order": "uniform"}
    a = [x for x, _ in FrameDataModule(phrases, in_memory=True, **uniform).train_dataloader()]
    b = [x for x, _ in FrameDataModule(phrases, in_memory=False, **uniform).train_dataloader()]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    blocks = torch.cat([x for x, _ in dm.train_dataloader()]).flatten(1)
    flat = torch.cat(a).flatten(1)
    assert torch.equal(blocks[blocks.sum(1).argsort()].sum(0), flat[flat.sum(1).argsort()].sum(0))


def test_spec_describes_the_frames_and_the_mean_frame(one_thread, phrases):
    dm = FrameDataModule(phrases, **WINDOWS)
    spec = dm.spec
    assert spec.input_shape == (12, 16) and spec.frames["hop_length"] == 8000 // 31
    assert spec.frames["kind"] == "power" and spec.frames["n_fft"] == 512
    train = frames_of(phrases, "train").astype(np.float64) / 255
    # The mean frame is averaged in linear power (where baselines are scored; the constant
    # frame of least MSE there), given back as unit log-mel: dB over the range [-80, 0].
    db_min, db_max = spec.frames["db_min"], spec.frames["db_max"]
    power = 10 ** ((db_min + train * (db_max - db_min)) / 10)
    mean = (10 * np.log10(power.mean(axis=(0, 1))) - db_min) / (db_max - db_min)
    assert np.allclose(spec.frame_mean, mean, atol=1e-6)
    flat = power.reshape(-1, power.shape[-1])

    def mse(frame: np.ndarray) -> float:
        return float(((flat - 10 ** ((db_min + frame * (db_max - db_min)) / 10)) ** 2).mean())

    assert mse(np.array(spec.frame_mean)) < mse(train.mean(axis=(0, 1)))  # the old log mean
    x, codes = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())))
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    assert codes.shape[1] == 3  # the phrase-level labels ride along


def test_phrases_have_the_labels_and_structure_the_recipe_says(one_thread, phrases):
    ds = VIMHDataset(phrases)
    assert [p.name for p in ds.params] == ["tempo", "level", "decay"]
    assert ds.info.raw["synth_config"]["module"]["_target_"] == "src.synth.phrase.PhraseSynth"
    loud = frames_of(phrases, "train").astype(np.float64).max(axis=2)  # (N, W) loudest bins
    # Notes start and stop: most phrases go from their peak to far below it.
    assert np.median(loud.max(axis=1) - loud.min(axis=1)) > 60


def test_rhythm_is_on_the_tempo_grid(one_thread):
    synth = PhraseSynth(subdivision=2, max_steps=4, gate_min=0.5, gate_max=1.4, rest_prob=0.3)
    tempo = torch.tensor([80.0, 120.0, 160.0], dtype=torch.float64)
    random = Randomness(torch.Generator().manual_seed(0))
    onsets, lengths, rests = synth.rhythm(random, 3, tempo)
    step = (60.0 / tempo / 2)[:, None]
    steps = torch.diff(onsets, dim=1) / step
    assert torch.allclose(steps, steps.round()) and steps.min() >= 1 and steps.max() <= 4
    assert torch.equal(onsets[:, 0], torch.zeros(3))
    assert (lengths >= 0.5 * step - 1e-9).all() and (lengths <= 1.4 * 4 * step + 1e-9).all()
    assert not rests[:, 0].any() and rests.any()
    degrees = synth.degrees(random, 3)
    # Melodies start on the tonic, arpeggios on it or (downwards) its octave.
    assert set(degrees[:, 0].tolist()) <= {0, 7} and degrees.abs().max() <= 7


def test_phrase_synth_is_seeded_and_groups_share_the_tune(one_thread):
    from src.generation.params import sample_codes
    from src.generation.renderer import batch_generator, build_renderer

    cfg = compose_config("generate", ["synth=phrase", "dataset.duration=1.0"])
    r = build_renderer(cfg)
    codes = sample_codes(r.params, 4, np.random.default_rng(0))
    a = r.render(codes, batch_generator(0, "train", 0))[1]
    b = r.render(codes, batch_generator(0, "train", 0))[1]
    assert torch.equal(a, b) and a.abs().max() <= 1.0
    # Same labels, one shared draw: the same phrase; another draw: another tune.
    same = np.repeat(codes[:1], 2, axis=0)
    shared = r.render(same, batch_generator(0, "train", 1), groups=np.array([0, 0]))[1]
    apart = r.render(same, batch_generator(0, "train", 1))[1]
    assert torch.equal(shared[0], shared[1]) and not torch.equal(apart[0], apart[1])


def wav_module(path, **kw) -> WavFrameDataModule:
    spectrogram = compose_config(
        "generate", ["spectrogram=mel_phrase", "spectrogram.height=16", "spectrogram.width=32"]
    ).spectrogram
    return WavFrameDataModule(path, spectrogram, clip_seconds=1.0, **{**WINDOWS, **kw})


def test_wav_folder_is_cut_imaged_and_split_by_file(one_thread, tmp_path, phrases):
    write_wavs(tmp_path / "wavs", n_files=5, seconds=2.6)
    dm = wav_module(tmp_path / "wavs", splits={"train": 0.6, "val": 0.2, "test": 0.2})
    dm.setup()
    # 2.6 s per file -> clips at 0 s, 1 s and a 0.6 s tail (kept: at least half a clip).
    assert {s: v.n_records for s, v in dm.splits.items()} == {"train": 9, "val": 3, "test": 3}
    files = {s: {w["file"] for w in where} for s, where in dm.clip_sources.items()}
    assert not (files["train"] & files["test"]) and not (files["val"] & files["test"])
    # The frames are the imager's on the clips, and match the tiny phrase dataset's facts.
    from src.audio.io import load_clips

    clips, _ = load_clips(sorted(files["test"]), 8000, 8000)
    expected = dm.imager(clips)[:, 0].transpose(1, 2)
    assert torch.equal(dm.records("test", np.arange(3)), expected)
    assert dm.frames == FrameDataModule(phrases, **WINDOWS).frames
    x, codes = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 12, 16) and codes.shape == (16, 0)


def test_wav_folder_defaults_to_evaluation_and_refuses_impossible_splits(tmp_path):
    write_wavs(tmp_path / "one", n_files=1, seconds=1.0)
    dm = wav_module(tmp_path / "one")
    dm.open_splits()
    assert sorted(dm.splits) == ["test"] and dm.spec.frame_mean is None
    with pytest.raises(ConfigError, match="no train split"):
        dm.train_dataloader()
    with pytest.raises(ConfigError, match="cannot fill"):
        assign_files(1, {"train": 0.5, "test": 0.5}, 0)
    with pytest.raises(ConfigError, match="test fraction"):
        assign_files(4, {"train": 1.0}, 0)


def test_frame_facts_name_the_channel_and_refuse_other_kinds():
    config = {
        "sample_rate": 8000,
        "n_samples": 8000,
        "width": 32,
        "height": 16,
        "f_min": 40.0,
        "f_max": 4000.0,
        "db_min": -80.0,
        "db_max": 0.0,
        "channels": [
            {"kind": "ifreq", "scale": "mel", "n_fft": 256},
            {"kind": "power", "scale": "mel", "n_fft": 512},
        ],
    }
    facts, channel = frame_facts(config)
    assert channel == 1 and facts["n_fft"] == 512 and facts["hop_length"] == 258
    with pytest.raises(ConfigError, match="not a power channel"):
        frame_facts(config, channel=0)
