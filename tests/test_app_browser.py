"""The page in a real browser: `src/app.py` serving a tiny trained checkpoint in a subprocess,
headless Chromium (Debian's chromium and chromium-driver, `make browser`) driven through
Selenium. Run by CI with `pytest -m slow -k browser` (`make test-browser`)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from src.demo.browser import (
    browser_paths,
    free_port,
    headless_chrome,
    predict_upload,
    small_png,
    wait_for_server,
)
from src.paths import PROJECT_ROOT
from tests.helpers.app import app_overrides, train_tiny_saw
from tests.helpers.entry import script_env
from tests.helpers.runs import on


def browser_or_skip() -> tuple[str, str]:
    """(browser, driver) paths; a missing one skips, unless NSM_REQUIRE_BROWSER=1 (CI) fails."""
    browser, driver = browser_paths()
    missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p]
    try:
        import gradio  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as e:
        missing.append(f"{e.name} (pip install -e '.[app]')")
    if missing:
        why = f"not installed: {', '.join(missing)} (make browser)"
        if os.environ.get("NSM_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return browser, driver


def fetch_wav(url: str) -> tuple[np.ndarray, int]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return sf.read(io.BytesIO(r.read()), dtype="float32")


@pytest.mark.slow
def test_the_page_in_chromium(tmp_path, compose_cfg, one_thread):
    browser, driver_path = browser_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from src.app import serve

    folder, ckpt = train_tiny_saw(tmp_path / "tiny")
    # What the page must show for test record 3, from the same functions in this process.
    session = serve(compose_cfg("app", app_overrides(folder, ckpt)))[1]["session"]
    wav, _ = session.record(session.records()[3])
    expected = session.answer(wav)
    assert not expected.message.startswith("error"), expected.message
    upload = tmp_path / "note.wav"
    shutil.copy(wav, upload)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is no sound")

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(PROJECT_ROOT / "src" / "app.py"),
            *on(folder),
            f"ckpt_path={ckpt}",
            f"port={port}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.run.dir={tmp_path / 'app_run'}",
            "extras.print_config=false",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=script_env(),
    )
    chrome = None
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_server(proc, url)
        chrome = headless_chrome(browser, driver_path)
        wait = WebDriverWait(chrome, 120)
        chrome.get(url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sound input[type=file]"))
        assert "ConvNet" in chrome.find_element(By.ID, "model").text

        def run(path: Path, expect: str) -> str:
            return predict_upload(chrome, wait, path, expect)

        said = run(upload, "note.wav: one note")
        assert said == expected.message.replace("test_00003.wav", "note.wav")
        wait.until(lambda d: "decay" in d.find_element(By.ID, "table").text)
        lines = [x.strip() for x in chrome.find_element(By.ID, "table").text.splitlines()]
        shown = [str(x) for x in (*expected.header, *(x for r in expected.rows for x in r))]
        at = lines.index("parameter") if "parameter" in lines else -1
        assert lines[at : at + len(shown)] == shown, lines  # header, then every row's values
        links = {}
        for i in range(2):
            slot = chrome.find_element(By.ID, f"out_audio_{i}")
            label = slot.find_element(By.CSS_SELECTOR, "[data-testid=block-label]").text
            href = slot.find_element(By.CSS_SELECTOR, "[data-testid=download-link]")
            links[label.strip()] = href.get_attribute("href")
        assert set(links) == set(expected.audio)
        for label, href in links.items():
            audio, rate = fetch_wav(href)
            want_rate, want = expected.audio[label]
            assert rate == want_rate == 8000 and len(audio) == len(want) == 8000
            assert np.abs(audio - want).max() < 1e-3, label
        sources = [
            img.get_attribute("src")
            for img in chrome.find_elements(By.CSS_SELECTOR, "#out_image_0 img, #out_image_1 img")
        ]
        assert len(sources) == 2 and all(s.endswith(".png") for s in sources)
        chrome.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("NSM_SCREENSHOT"):  # how docs/app.png is taken (README)
            small_png(tmp_path / "page.png", Path(os.environ["NSM_SCREENSHOT"]))
        # A file that is no sound: a message on the page, and the server keeps serving.
        said = run(junk, "error:")
        assert "junk.wav: not a sound file this page can read" in said
        said = run(upload, "note.wav: one note")
        assert proc.poll() is None
    finally:
        if chrome is not None:
            chrome.quit()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert (tmp_path / "page.png").stat().st_size > 10_000
