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
    assert "83,049" in rows["stft_bcresnet_81k.yaml"] and "11,927" in rows["cnn_12k.yaml"]


def test_scripts_do_not_import_tests_or_patch_sys_path():
    for path in (PROJECT_ROOT / "scripts").glob("*.py"):
        text = path.read_text()
        assert "from tests" not in text and "import tests" not in text, path.name
        assert "sys.path" not in text and 'PROJECT_ROOT"' not in text, path.name


def test_compare_models_keeps_each_finished_run_and_resumes(tmp_path, monkeypatch):
    """A finished (model, seed) is read back from the cache, never trained again; a new one is
    trained once and its result written whole (no temporary file left behind)."""
    import sys

    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))  # compare_models imports mdreport
    try:
        cm = load_script("compare_models")
    finally:
        sys.path.remove(str(PROJECT_ROOT / "scripts"))
    calls = []

    def fake_run(model, data, epochs, seed, out, size=None):
        calls.append((model, seed))
        return {"metrics": {"test/score": 0.5 + seed}, "params": 7, "trainable": 7}

    monkeypatch.setattr(cm, "run_one", fake_run)
    first = cm.cached_run("cnn_12k", "saw", 1, 0, tmp_path, None, 1)
    again = cm.cached_run("cnn_12k", "saw", 1, 0, tmp_path, None, 1)
    other = cm.cached_run("cnn_12k", "saw", 1, 1, tmp_path, None, 1)
    assert calls == [("cnn_12k", 0), ("cnn_12k", 1)]
    assert first == again and other["metrics"]["test/score"] == 1.5
    assert sorted(p.name for p in tmp_path.glob("*.json*")) == ["cnn_12k_0.json", "cnn_12k_1.json"]
