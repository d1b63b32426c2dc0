"""src/search.py: an Optuna study over the train task, in process, on a tiny dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import src.search as search_module
from src.errors import ConfigError, NSMError
from src.search import search
from src.utils.search_space import Param, override_value, parse_space
from tests.helpers.runs import QUIET, on
from tests.helpers.vimh import make_vimh
from tests.test_scripts import load_script

# Short trials, logged nowhere but metrics.json; a seeded sampler.
FAST = [
    "trainer.max_epochs=2",
    "data.batch_size=32",
    "logger=none",
    "callbacks.lr_monitor=null",
    "search.sampler.n_startup_trials=2",
    *QUIET,
]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_vimh(tmp_path_factory.mktemp("small"), n_train=128, n_val=32, n_test=32)


@pytest.fixture
def search_cfg(compose_cfg, small, one_thread):
    def make(*overrides: str):
        return compose_cfg("train", ["hparams_search=optuna", *on(small), *FAST, *overrides])

    return make


def study_of(cfg) -> optuna.Study:
    url = f"sqlite:///{Path(cfg.paths.output_dir) / 'study.db'}"
    return optuna.load_study(study_name=cfg.search.study_name, storage=url)


def test_search_reports_its_best_and_resumes_from_storage(search_cfg):
    metrics, _ = search(search_cfg("search.n_trials=2"))
    assert metrics["complete"] == 2
    # The same command with a bigger budget continues the stored study: 2 more trials.
    cfg = search_cfg("search.n_trials=4")
    metrics, objects = search(cfg)
    study = objects["study"]
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    values = [t.value for t in study.trials]
    assert metrics["best_value"] == max(values)
    assert metrics["best_trial"] == values.index(max(values))
    out = Path(cfg.paths.output_dir)
    best = json.loads((out / "best.json").read_text())
    assert best["value"] == max(values) and set(best["params"]) == {"lr", "weight_decay"}
    for t in study.trials:  # each trial is a run folder with its final metrics
        final = json.loads((out / "trials" / str(t.number) / "metrics.json").read_text())
        assert final["val/score"] == pytest.approx(t.value)
        assert "test/score" not in final  # trials are validated, not tested
    assert len({t.params["lr"] for t in study.trials}) == 4  # a resumed sampler draws anew
    # The collector reads the study from its folder: one row per trial.
    load_script("collect_runs").main([str(out)])
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:5] == ["job", "state", "lr", "weight_decay", "val/score"]
    assert [float(r["val/score"]) for r in rows] == pytest.approx(values)
    assert (out / "runs.png").is_file()
    # Another problem under the same study name is refused, not mixed in.
    with pytest.raises(ConfigError, match="searched another problem"):
        search(search_cfg("search.n_trials=5", "trainer.max_epochs=3"))


def test_a_raising_or_diverging_trial_fails_and_the_search_goes_on(search_cfg):
    cfg = search_cfg(
        "search.n_trials=3",
        "+search.params.batch={key:data.batch_size,choices:[32,0]}",
        # trial 0: batch size 0 (a ConfigError); trial 1: a learning rate that diverges
        "search.enqueue=[{batch:0},{batch:32,lr:1.0e10}]",
    )
    metrics, objects = search(cfg)
    trials = objects["study"].trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "data.batch_size must be >= 1" in trials[0].user_attrs["error"]
    assert "val/loss is nan" in trials[1].user_attrs["error"]
    assert metrics["fail"] == 2 and metrics["best_trial"] == 2


@pytest.mark.slow
def test_an_interrupted_search_retries_the_cut_trial(search_cfg, monkeypatch):
    real_train, calls = search_module.train, []

    def cut_second(cfg, **kwargs):
        calls.append(cfg.model.optimizer.lr)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train(cfg, **kwargs)

    monkeypatch.setattr(search_module, "train", cut_second)
    with pytest.raises(KeyboardInterrupt):
        search(search_cfg("search.n_trials=3"))
    monkeypatch.setattr(search_module, "train", real_train)
    cfg = search_cfg("search.n_trials=3")
    _, objects = search(cfg)
    trials = objects["study"].trials
    # 0 done, 1 cut short, then 1's parameters again (2) and one more (3): three count.
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL] + 2 * [
        TrialState.COMPLETE
    ]
    assert trials[2].user_attrs["retry_of"] == 1 and trials[2].params == trials[1].params
    assert study_of(cfg).user_attrs["retried"] == [1]


def test_pruning_stops_a_trial_through_the_lightning_integration(search_cfg):
    cfg = search_cfg(
        "search.n_trials=1",
        "trainer.max_epochs=4",
        # val/score is at most 1, so this pruner stops every trial at its first report
        "~search.pruner",
        "+search.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0}",
    )
    with pytest.raises(NSMError, match="no trial completed"):
        search(cfg)
    (trial,) = study_of(cfg).trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # stopped after the first of 4 epochs


def test_search_space_errors_name_the_field(search_cfg):
    with pytest.raises(ConfigError, match=r"search.params.lr: needs low < high"):
        parse_space({"lr": {"key": "model.optimizer.lr", "type": "float", "low": 1, "high": 0}})
    with pytest.raises(ConfigError, match="give type"):
        parse_space({"x": {"key": "a"}})
    with pytest.raises(ConfigError, match=r"model\.optimizer\.lrr is not a key"):
        search(search_cfg("search.params.lr.key=model.optimizer.lrr"))
    with pytest.raises(ConfigError, match="config group model has no options"):
        search(search_cfg("+search.params.model={choices:[cnn_12k,cnn_9]}"))
    with pytest.raises(ConfigError, match="on one device"):
        search(search_cfg("trainer=ddp_sim"))
    with pytest.raises(ConfigError, match="no search config"):
        search(search_cfg("~search"))


def test_choices_become_overrides():
    p = Param.from_config("channels", {"key": "model.net.channels", "choices": [[8, 16], [4]]})
    assert p.choices == ("[8,16]", "[4]") and p.override("[8,16]") == "model.net.channels=[8,16]"
    assert override_value(True) == "true" and override_value(None) == "null"
    assert override_value("a b") == "'a b'" and override_value(1e-5) == "1e-05"
