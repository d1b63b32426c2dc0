"""Drive the page in headless Chromium (Selenium): shared by the browser test
(tests/test_app_browser.py) and the README's screenshot (scripts/app_screenshot.py).
Needs the app extra and Debian's chromium and chromium-driver (`make browser`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def browser_paths() -> tuple[str | None, str | None]:
    """(browser, driver) executables, None where missing."""
    return next((p for p in map(shutil.which, CHROMIUM) if p), None), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(proc: subprocess.Popen, url: str, timeout: float = 180.0) -> None:
    """Return once `url` answers; raise RuntimeError if the server exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{out}\n{err}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s")


def headless_chrome(browser: str, driver: str, size: str = "1400,1900"):
    """A headless Chromium WebDriver (no sandbox: CI containers run as root)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={size}")
    return webdriver.Chrome(service=Service(driver), options=options)


def predict_upload(chrome, wait, path: Path, expect: str, refine: bool = False) -> str:
    """Upload `path` as the page's sound (clearing the last one), press Predict, and return
    the status line once it contains `expect`."""
    from selenium.webdriver.common.by import By

    def status() -> str:
        return chrome.find_element(By.ID, "status").text

    for clear in chrome.find_elements(By.CSS_SELECTOR, "#sound button[aria-label=Clear]"):
        clear.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sound input[type=file]"))
    chrome.find_element(By.CSS_SELECTOR, "#sound input[type=file]").send_keys(str(path))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sound [data-testid=download-link]"))
    if refine:
        box = chrome.find_element(By.CSS_SELECTOR, "#refine input[type=checkbox]")
        if not box.is_selected():
            box.click()
    chrome.find_element(By.ID, "run").click()
    wait.until(lambda d: expect in status())
    return status()


def small_png(path: Path, to: Path, width: int = 900) -> None:
    """A downscaled, palette PNG of a screenshot (small enough to commit)."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=128).save(to, optimize=True)
