"""Keyword spotting end to end on converted recordings: train, eval, predict, balance.

The "words" are synth notes of four timbres (tests/helpers/words.py) in the Speech Commands
layout; the experiments are the ones documented for a real copy of Speech Commands
(docs/own_data.md), shrunk to seconds.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from src.convert import convert_dataset
from src.data.batching import EpochBatches
from src.data.datamodule import VIMHDataModule
from src.data.vimh.classes import categorical_spec
from src.errors import ConfigError, DataError
from src.eval import evaluate
from src.metrics.estimation import EstimationMetrics
from src.predict import predict
from src.train import train
from tests.helpers.runs import QUIET, raises_user_error
from tests.helpers.words import TEST_SPEAKER, WORDS

SMALL = ["dataset.sample_rate=8000", "dataset.duration=0.5", "dataset.batch_size=32"]
FAST = [*QUIET, "callbacks.lr_monitor=null", "data.batch_size=16"]


@pytest.fixture(scope="module")
def kws_folder(words, tmp_path_factory) -> Path:
    """The words converted with their waveforms (images and audio in one folder)."""
    from tests.conftest import compose_config

    out = tmp_path_factory.mktemp("kws")
    cfg = compose_config(
        "convert",
        out,
        ["source=speech_commands", f"source.path={words[0]}", "dataset.store_audio=true", *SMALL],
    )
    return convert_dataset(cfg)


@pytest.fixture(scope="module")
def kws_run(kws_folder, tmp_path_factory) -> tuple[dict, dict]:
    """experiment=kws_cnn on the converted words (no masking: 32x32 images are small)."""
    from hydra.core.global_hydra import GlobalHydra

    from tests.conftest import compose_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    overrides = [
        "experiment=kws_cnn",
        f"data.data_dir={kws_folder}",
        "data.augment=null",
        "trainer.max_epochs=12",
        *FAST,
    ]
    try:
        return train(compose_config("train", tmp_path_factory.mktemp("kws_run"), overrides))
    finally:
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()


def test_converted_words_train_a_cnn_above_chance(kws_run):
    metrics, objects = kws_run
    assert objects["datamodule"].balance == "word"
    acc = float(metrics["test/word/acc"])
    assert acc > 2 / len(WORDS), f"accuracy {acc:.3f} is not above twice chance"
    f1 = float(metrics["test/word/f1_macro"])
    assert 0.0 < f1 <= 1.0
    # The skill of a nominal head is against the train mode: 1 - error / error(mode).
    err_mode = 1 - 1 / len(WORDS)  # the test speaker says every word equally often
    assert float(metrics["test/word/skill"]) == pytest.approx(1 - (1 - acc) / err_mode, abs=1e-5)


def test_eval_writes_names_macro_f1_and_a_confusion_matrix(compose_cfg, kws_run, kws_folder):
    ckpt = kws_run[1]["trainer"].checkpoint_callback.best_model_path
    cfg = compose_cfg("eval", ["data=kws", f"data.data_dir={kws_folder}", f"ckpt_path={ckpt}"])
    metrics, _ = evaluate(cfg)
    assert "test/word/f1_macro" in metrics
    out = Path(cfg.paths.output_dir)
    assert (out / "confusion_word.png").is_file() and not (out / "scatter_word.png").exists()
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["word_true_name"] for r in rows} == set(WORDS)
    for r in rows:
        assert r["word_pred_name"] == WORDS[int(float(r["word_pred_class"]))]


def test_predict_prints_class_names(compose_cfg, kws_run, kws_folder, words, caplog):
    ckpt = kws_run[1]["trainer"].checkpoint_callback.best_model_path
    root, rows = words
    mine = [r for r in rows if r["file"].split("/")[1].startswith(TEST_SPEAKER)]
    cfg = compose_cfg(
        "predict",
        ["data=vimh", f"data.data_dir={kws_folder}", f"ckpt_path={ckpt}", f"audio={root}"],
    )
    with caplog.at_level(logging.INFO):
        _, objects = predict(cfg)
    names = objects["names"]["word"]
    assert len(names) == len(rows) + 1 and set(names) <= set(WORDS)  # + the background noise
    said = [m for m in caplog.messages if ".wav: word=" in m]  # the first files, named
    assert len(said) == 50 and all(any(f"word={w} (" in m for w in WORDS) for m in said)
    with open(Path(cfg.paths.output_dir) / "predictions.csv") as f:
        out = list(csv.DictReader(f))
    assert [r["word_name"] for r in out] == names
    assert all(0.0 < float(r["word_prob"]) <= 1.0 for r in out)
    # The test speaker's files, heard as the dataset heard them: named better than chance.
    truth = {str(root / r["file"]): r["word"] for r in mine}
    hits = [r["word_name"] == truth[r["file"]] for r in out if r["file"] in truth]
    assert len(hits) == len(mine) and np.mean(hits) > 2 / len(WORDS)


def test_another_class_order_is_refused(compose_cfg, kws_run, words, tmp_path, one_thread):
    ckpt = kws_run[1]["trainer"].checkpoint_callback.best_model_path
    cfg = compose_cfg(
        "convert",
        ["source=speech_commands", f"source.path={words[0]}", *SMALL,
         f"source.classes=[{','.join(reversed(WORDS))}]"],
        out="reordered",
    )  # fmt: skip
    other = convert_dataset(cfg)
    cfg = compose_cfg("eval", ["data=vimh", f"data.data_dir={other}", f"ckpt_path={ckpt}"])
    with raises_user_error(DataError, "class_names"):
        evaluate(cfg)


def test_bcresnet_trains_on_the_converted_waveforms(compose_cfg, kws_folder, one_thread):
    cfg = compose_cfg(
        "train",
        [
            "experiment=kws_bcresnet",
            f"data.data_dir={kws_folder}",
            "trainer.max_epochs=2",
            "callbacks.filterbank_plot=null",
            *FAST,
        ],
    )
    metrics, objects = train(cfg)
    assert objects["datamodule"].input_shape == (1, 4000)
    assert objects["model"].hparams.sample_rate == 8000
    assert np.isfinite(float(metrics["test/word/f1_macro"]))


def test_class_balanced_batches(kws_folder, tmp_path, words, one_thread):
    # An imbalanced copy: "saw" keeps 2 of its 24 files.
    root = tmp_path / "words"
    shutil.copytree(words[0], root)
    for f in sorted((root / "saw").iterdir())[2:]:
        f.unlink()
    from tests.conftest import compose_config

    cfg = compose_config(
        "convert", tmp_path / "conv", ["source=folder", f"source.path={root}", *SMALL]
    )
    folder = convert_dataset(cfg)
    plain = VIMHDataModule(folder, batch_size=32)
    balanced = VIMHDataModule(folder, batch_size=32, balance="label")
    streamed = VIMHDataModule(folder, batch_size=32, balance="label", in_memory=False)

    def epoch(dm, n: int = 1) -> np.ndarray:
        loader = dm.loader("train", shuffle=True, rank=0, world_size=1)
        loader.sampler.set_epoch(n)
        return np.concatenate([y[:, 0].numpy() for _, y in loader])

    codes = {0: 0, 85: 1, 170: 2, 255: 3}  # 4 classes: 255 * k // 3
    seen = [codes[c] for e in range(8) for c in epoch(balanced, e)]
    counts = np.bincount(seen, minlength=4)
    assert counts.min() > 0.75 * counts.mean(), counts  # "saw" drawn as often as the rest
    assert np.bincount([codes[c] for c in epoch(plain)], minlength=4)[3] <= 2
    assert len(epoch(balanced)) == plain.num_records("train")
    np.testing.assert_array_equal(epoch(balanced, 3), epoch(balanced, 3))
    np.testing.assert_array_equal(epoch(balanced, 3), epoch(streamed, 3))
    assert not np.array_equal(epoch(balanced, 3), epoch(balanced, 4))
    assert epoch(balanced).tolist() != sorted(epoch(balanced).tolist())
    with pytest.raises(ConfigError, match=r"data.balance=.word. names no head"):
        VIMHDataModule(folder, balance="word")
    assert VIMHDataModule(folder, balance=True).balance == "label"  # the categorical head
    assert VIMHDataModule(folder, balance=False).balance is None


def test_weighted_epochs_draw_with_replacement():
    w = torch.tensor([1.0, 1.0, 0.0, 2.0])
    b = EpochBatches(4, 2, shuffle=True, seed=1, weights=w)
    order = torch.cat(list(b))
    assert len(order) == 4 and 2 not in order.tolist()
    assert torch.equal(EpochBatches(4, 4, shuffle=False, weights=w).indices(), torch.arange(4))
    with pytest.raises(ValueError, match="non-negative"):
        EpochBatches(4, 2, shuffle=True, weights=torch.tensor([1.0, -1.0, 0.0, 0.0]))


def test_nominal_skill_is_against_the_train_mode():
    spec = categorical_spec("word", 3)
    true = torch.tensor([0, 0, 0, 1, 2, 2])  # mode 0: wrong on 3 of 6
    pred = torch.tensor([0, 0, 1, 1, 2, 0])  # wrong on 2 of 6
    metrics = EstimationMetrics([spec], {"word": 0.0})
    as_pair = {"word": (true.float(), true)}
    metrics.update({"word": (pred.float(), pred)}, as_pair)
    out = metrics.compute("test")
    assert float(out["test/word/acc"]) == pytest.approx(4 / 6)
    assert float(out["test/word/skill"]) == pytest.approx(1 - (2 / 6) / (3 / 6))
    f1 = np.mean([2 * 2 / (2 * 2 + 1 + 1), 2 * 1 / (2 * 1 + 1 + 0), 2 * 1 / (2 * 1 + 0 + 1)])
    assert float(out["test/word/f1_macro"]) == pytest.approx(f1)
