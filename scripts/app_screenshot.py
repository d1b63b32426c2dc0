"""Take the README's screenshot of the demo page: `src/app.py` on a checkpoint, one test note
uploaded in headless Chromium (as tests/test_app_browser.py drives it), the result captured.

    python scripts/app_screenshot.py --ckpt logs/train/runs/<run>/checkpoints/<best>.ckpt \
        [--data saw] [--record 3] [--refine] [--out docs/app.png]

Needs the app extra and Chromium with its driver (`make browser`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from src.paths import PROJECT_ROOT


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ckpt", required=True, type=Path)
    ap.add_argument("--data", default="saw", help="the checkpoint's dataset config")
    ap.add_argument("--record", type=int, default=3, help="test record uploaded")
    ap.add_argument("--refine", action="store_true", help="tick 'refine' before predicting")
    ap.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "app.png")
    ap.add_argument("--width", type=int, default=900, help="width of the saved PNG")
    args = ap.parse_args()

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from src.app import serve
    from src.demo.browser import (
        browser_paths,
        free_port,
        headless_chrome,
        predict_upload,
        small_png,
        wait_for_server,
    )
    from src.paths import CONFIG_DIR

    overrides = [f"data={args.data}", f"ckpt_path={args.ckpt}", "launch=false"]
    browser, driver = browser_paths()
    if not (browser and driver):
        raise SystemExit("Chromium and chromedriver are needed: make browser")
    with tempfile.TemporaryDirectory() as tmp:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("app", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = tmp
        session = serve(cfg)[1]["session"]  # the page's own session, to pick the test record
        wav, _ = session.record(session.records()[args.record])
        upload = Path(tmp) / "note.wav"
        shutil.copy(wav, upload)
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "src" / "app.py"), *overrides[:2],
             f"port={port}", f"hydra.run.dir={tmp}/run", "extras.print_config=false"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        chrome = None
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for_server(proc, url)
            chrome = headless_chrome(browser, driver)
            wait = WebDriverWait(chrome, 600)
            chrome.get(url)
            print(predict_upload(chrome, wait, upload, "note.wav", refine=args.refine))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#out_image_1 img"))
            time.sleep(1.0)  # let the images paint
            shot = Path(tmp) / "page.png"
            chrome.save_screenshot(str(shot))
        finally:
            if chrome is not None:
                chrome.quit()
            proc.terminate()
            proc.wait(timeout=30)
        small_png(shot, args.out, args.width)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
