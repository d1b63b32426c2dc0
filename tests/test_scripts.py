"""The tools in scripts/ run on this checkout (the ones that are fast enough for a test)."""

from __future__ import annotations

import importlib.util

from src.paths import PROJECT_ROOT


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_count_params_counts_every_config_image_and_waveform(capsys):
    assert load_script("count_params").main([]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line[-1:].isdigit()]
    rows = {line.split()[0]: line for line in lines}
    models = sorted(p.name for p in (PROJECT_ROOT / "configs" / "model").glob("*.yaml"))
    assert sorted(k for k in rows if k.endswith(".yaml")) == models
    assert "83,346" in rows["stft_bcresnet_81k.yaml"] and "12,188" in rows["cnn_12k.yaml"]


def test_scripts_do_not_import_tests_or_patch_sys_path():
    for path in (PROJECT_ROOT / "scripts").glob("*.py"):
        text = path.read_text()
        assert "from tests" not in text and "import tests" not in text, path.name
        assert "sys.path" not in text and 'PROJECT_ROOT"' not in text, path.name


def compare_models():
    import sys

    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))  # compare_models imports mdreport
    try:
        return load_script("compare_models")
    finally:
        sys.path.remove(str(PROJECT_ROOT / "scripts"))


def test_compare_models_keeps_each_finished_run_and_resumes(tmp_path, monkeypatch):
    """A finished (model, mode, seed) is read back from the cache, never trained again; a new
    one is trained once and its result written whole (no temporary file left behind)."""
    cm = compare_models()
    calls = []

    def fake_run(model, data, epochs, seed, out, size=None, mode=None):
        calls.append((model, seed, mode))
        return {"metrics": {"test/score": 0.5 + seed}, "params": 7, "trainable": 7}

    monkeypatch.setattr(cm, "run_one", fake_run)
    first = cm.cached_run("cnn_12k", "saw", 1, 0, tmp_path, None, 1)
    again = cm.cached_run("cnn_12k", "saw", 1, 0, tmp_path, None, 1)
    other = cm.cached_run("cnn_12k", "saw", 1, 1, tmp_path, None, 1)
    moded = cm.cached_run("cnn_12k", "saw", 1, 1, tmp_path, None, 1, "offset")
    assert calls == [("cnn_12k", 0, None), ("cnn_12k", 1, None), ("cnn_12k", 1, "offset")]
    assert (
        first == again and other["metrics"]["test/score"] == 1.5 == moded["metrics"]["test/score"]
    )
    assert sorted(p.name for p in tmp_path.glob("*.json*")) == [
        "cnn_12k+offset_1.json",
        "cnn_12k_0.json",
        "cnn_12k_1.json",
    ]


def test_compare_models_claims_need_three_standard_errors():
    """ "Beats" is computed: a gap of 3 standard errors over the seeds, never from one run, and
    each finding names exactly the models that pass."""
    cm = compare_models()
    assert cm.beats([0.90, 0.91, 0.92], 0.85)  # gap 0.06, 3 SE = 0.017
    assert not cm.beats([0.86, 0.90, 0.94], 0.85)  # gap 0.05, 3 SE = 0.069
    assert not cm.beats([0.99], 0.10)  # one run: no spread, no claim
    assert cm.beats([1.0, 1.1, 1.2], 2.0, lower_is_better=True)
    assert not cm.beats([1.0, 1.1, 1.2], 2.0)

    heads = ["pitch"]

    def metrics(score, mae):
        return {"test/score": score, "test/pitch/mae": mae}

    def sound(mss, lsd):
        return {"mss/mean": mss, "mss/median": mss, "lsd_db/mean": lsd, "lsd_db/median": lsd}

    base = {
        "nn_pixels": metrics(0.80, 1.0),
        "linear_probe": metrics(0.70, 2.0),
        "oracle_class": metrics(0.95, 0.25),
    }
    base_sound = {"nn_pixels": sound(1.0, 7.0)}
    runs = {  # small and good; large and better; tiny and noisy
        "a": [
            {"metrics": metrics(s, 0.5), "sound": sound(0.5, 5.0), "params": 10}
            for s in (0.96, 0.97, 0.98)
        ],
        "b": [
            {"metrics": metrics(s, 1.5), "sound": sound(1.2, 9.0), "params": 100}
            for s in (0.98, 0.99, 0.995)
        ],
        "c": [
            {"metrics": metrics(s, mae), "sound": sound(m, lsd), "params": 5}
            for s, mae, m, lsd in ((0.5, 0.5, 0.1, 5.0), (0.9, 1.5, 1.9, 9.0), (0.7, 0.9, 1.0, 6.0))
        ],
    }
    found = "\n".join(cm.findings(runs, base, base_sound, heads))
    assert "Highest mean score: `b`" in found
    assert (
        "models above the ceiling by 3 standard errors (their estimates leave the class "
        "grid): `a`, `b`" in found
    )
    assert "smallest first: `c` (5 parameters, 0.700), `a` (10 parameters, 0.970), `b`" in found
    assert "Beat `nn_pixels` on score: `a`, `b`; on the MAE of every head: `a`." in found
    assert "by the sound (MSS, mean and median): `a`; not: `b`, `c`." in found
    assert "by the sound (LSD, mean and median): `a`; not: `b`, `c`." in found


def test_benchmarks_mark_targets_and_note_a_loaded_machine(monkeypatch):
    md = load_script("mdreport")
    assert md.target_status(20_000, 20_000) == "met"
    assert md.target_status(19_999, 20_000) == "missed"
    assert md.target_status(2.9, 3.0, at_least=False) == "met"
    assert md.target_status(3.1, 3.0, at_least=False) == "missed"
    monkeypatch.setattr(md.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(md.os, "getloadavg", lambda: (0.5, 0.0, 0.0))
    assert md.load_note() == ""  # a quiet machine: nothing to say
    monkeypatch.setattr(md.os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    assert "load average 3.0 on 2 cores" in md.load_note()
