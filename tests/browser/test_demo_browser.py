"""The demo in a real headless Chromium: upload, prompt, Segment, overlay, area = tmc-predict's.

Marked ``browser`` (``make test-browser``); skips where Chromium, chromedriver, Selenium or
Gradio is missing. Writes the screenshot the README shows (``docs/demo.png``).
"""

import io
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tmc_lightning.inference.predict import predict
from tmc_lightning.inference.predictor import Predictor

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TEXT = "Unilateral pulmonary infection, one infected area, lower left lung."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("Chromium or chromedriver not installed (make browser-deps)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
    ):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=opts, service=service)
    yield driver
    driver.quit()


def test_demo_segments_an_upload_like_tmc_predict(browser, trained_tiny, tmp_path):
    pytest.importorskip("gradio", reason="gradio not installed (pip install -e '.[demo]')")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tmc_lightning.cli.demo import build_app

    ckpt = trained_tiny["results"]["best_checkpoint"]
    image = REPO / "tests" / "fixtures" / "synthetic_test3.png"
    predict(ckpt, str(image), TEXT, str(tmp_path / "pred"))
    want = int((np.asarray(Image.open(tmp_path / "pred" / "synthetic_test3_mask.png")) > 0).sum())

    app = build_app(Predictor.from_checkpoint(ckpt))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 60)
        upload = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#image input[type=file]"))
        )
        upload.send_keys(str(image))
        wait.until(
            ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'synthetic_test3')]"))
        )
        prompt = browser.find_element(By.CSS_SELECTOR, "#prompt textarea")
        prompt.clear()
        prompt.send_keys(TEXT)
        browser.find_element(By.CSS_SELECTOR, "#segment").click()
        area = wait.until(
            lambda d: (
                (v := d.find_element(By.CSS_SELECTOR, "#area textarea").get_attribute("value"))
                and v
            )
        )
        assert area.startswith(f"mask area: {want} pixels"), area
        src = wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#overlay img").get_attribute("src")
        )
        with urllib.request.urlopen(src, timeout=30) as resp:
            shown = np.asarray(Image.open(io.BytesIO(resp.read())).convert("L"))
        assert shown.std() > 5, "the overlay is blank"
        time.sleep(1)  # let the probability map and the heatmaps render for the screenshot
        shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        shot.thumbnail((960, 1100))
        shot.quantize(colors=96).save(REPO / "docs" / "demo.png", optimize=True)
    finally:
        app.close()
