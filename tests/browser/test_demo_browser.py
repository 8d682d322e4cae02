"""The demo in a real headless Chromium, as a clinician meets it.

- upload, prompt, Segment: the image in view, the overlay beside it, area = tmc-predict's,
  one attention heatmap for a chosen stage and word (writes ``docs/demo.png``);
- ``tmc-demo`` started on a checkpoint of an LViT-layout dataset with ``dataset.root=``: that
  data's own validation images and texts are the examples; a huge image gets its size in the
  status line and the result panels are cleared;
- with ``TMC_DEMO_CKPT`` set to a checkpoint trained on real QaTa-COV19 (and its data found at
  the recorded root, ``TMC_DEMO_DATA`` or ``../shared/data/QaTa-COV19``): the same page on a
  real validation image, written to ``docs/demo_qata.png``; skipped otherwise.

Marked ``browser`` (``make test-browser``); skips where Chromium, chromedriver, Selenium or
Gradio is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.config import SHARED_QATA
from tests.helpers.images import write_huge_png
from tests.helpers.layouts import VAL_TEXTS, make_lvit_dataset
from tmc_lightning.data.datamodule import RECIPE_KEYS, datamodule_keys
from tmc_lightning.inference.predict import predict
from tmc_lightning.inference.predictor import Predictor

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
TEXT = "Unilateral pulmonary infection, one infected area, lower left lung."
WAIT = 90  # seconds: this machine's CPUs are shared
SHOWN = 55  # Gradio's examples table cuts a text after ~60 characters: match what it shows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("Chromium or chromedriver not installed (make browser-deps)")
    pytest.importorskip("gradio", reason="gradio not installed (pip install -e '.[demo]')")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1750",
    ):
        opts.add_argument(arg)
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=opts, service=service)
    yield driver
    driver.quit()


# -- page helpers -----------------------------------------------------------------------------


def _by():
    from selenium.webdriver.common.by import By

    return By


def wait_for(driver, condition, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def value(driver, css: str) -> str:
    return driver.find_element(_by().CSS_SELECTOR, css).get_attribute("value") or ""


def status(driver) -> str:
    return value(driver, "#status textarea")


def wait_status(driver, needle: str) -> str:
    wait_for(driver, lambda d: needle in status(d))
    return status(driver)


def image_src(driver, elem_id: str) -> str | None:
    imgs = driver.find_elements(_by().CSS_SELECTOR, f"#{elem_id} img")
    return imgs[0].get_attribute("src") if imgs else None


def fetch(src: str) -> np.ndarray:
    with urllib.request.urlopen(src, timeout=30) as resp:
        return np.asarray(Image.open(io.BytesIO(resp.read())).convert("RGB"))


def examples_text(driver, heading: str) -> str:
    """The page's text once the examples under ``heading`` are drawn, else ''."""
    page = driver.find_element(_by().TAG_NAME, "body").text
    return page if heading in page and "Prompt" in page.split(heading, 1)[1] else ""


def example(driver, text: str):
    """The examples table's cell that shows ``text`` (cut as Gradio cuts it)."""
    xpath = f"//td[contains(., '{text[:SHOWN]}')]"
    return wait_for(driver, lambda d: d.find_element(_by().XPATH, xpath))


def upload(driver, path: Path) -> None:
    """Upload ``path`` as a user would, clearing the file shown first (its x) if there is one."""
    By = _by()
    field = "#image input[type=file]"
    if not driver.find_elements(By.CSS_SELECTOR, field):
        driver.find_element(By.CSS_SELECTOR, "#image button[aria-label=Clear]").click()
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, field)).send_keys(str(path))


def segment_and_wait(driver) -> str:
    driver.find_element(_by().CSS_SELECTOR, "#segment").click()
    return wait_for(driver, lambda d: value(d, "#area textarea"))


def choose(driver, elem_id: str, label: str) -> None:
    """Pick ``label`` in a Gradio dropdown, as a user would: open it, click the option."""
    By = _by()
    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input").click()
    css = f"[role=option][aria-label='{label}']"
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, css)).click()
    wait_for(driver, lambda d: value(d, f"#{elem_id} input") == label)


def screenshot(driver, path: Path) -> None:
    time.sleep(1)  # let the last images render
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    shot.thumbnail((1100, 1400))
    shot.quantize(colors=128).save(path, optimize=True)


def launched(app) -> int:
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return port


class DemoProcess:
    """``tmc-demo`` started the way a user starts it, on a free port; stopped on exit."""

    def __init__(self, *overrides: str) -> None:
        self.port = free_port()
        exe = Path(sys.executable).with_name("tmc-demo")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tmc_lightning.cli.demo"]
        self.log = io.StringIO()
        self.proc = subprocess.Popen(
            [*cmd, *overrides, f"port={self.port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
        )

    def __enter__(self) -> DemoProcess:
        deadline = time.time() + 240
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tmc-demo exited: {self.proc.stdout.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5):
                    return self
            except OSError:
                time.sleep(1)
        raise AssertionError("tmc-demo did not start within 240 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the synthetic checkpoint (docs/demo.png unless a real one is given) ----------------------


def test_demo_segments_an_upload_like_tmc_predict(browser, trained_tiny, tmp_path):
    from tmc_lightning.cli.demo import build_app
    from tmc_lightning.inference.segment import checkpoint_examples

    By = _by()
    ckpt = trained_tiny["results"]["best_checkpoint"]
    image = REPO / "tests" / "fixtures" / "synthetic_test3.png"
    predict(ckpt, str(image), TEXT, str(tmp_path / "pred"))
    want = int((np.asarray(Image.open(tmp_path / "pred" / "synthetic_test3_mask.png")) > 0).sum())

    shown = checkpoint_examples(ckpt)  # a synthetic checkpoint: the bundled synthetic examples
    app = build_app(Predictor.from_checkpoint(ckpt), examples=shown)
    port = launched(app)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(browser, lambda d: status(d) == "ready")
        page = wait_for(browser, lambda d: examples_text(d, "Synthetic examples"))
        assert shown.items[0]["text"][:SHOWN] in page
        assert value(browser, "#prompt textarea") == shown.items[0]["text"]  # prefilled

        upload(browser, image)
        wait_status(browser, "synthetic_test3.png: 64 x 64 pixels")
        preview = fetch(wait_for(browser, lambda d: image_src(d, "preview")))
        gray = np.asarray(Image.open(image).convert("L"))
        assert preview.shape[:2] == (320, 320)  # the upload in view, enlarged pixel-exact
        assert np.array_equal(preview[::5, ::5, 0], gray)

        prompt = browser.find_element(By.CSS_SELECTOR, "#prompt textarea")
        prompt.clear()
        prompt.send_keys(TEXT)
        area = segment_and_wait(browser)
        assert area.startswith(f"mask area: {want} pixels"), area
        assert status(browser).startswith("done: synthetic_test3.png, mask area:")
        assert fetch(wait_for(browser, lambda d: image_src(d, "overlay"))).std() > 5

        # Attention: the deepest stage, all words averaged; then one word of stage 1.
        first = wait_for(browser, lambda d: image_src(d, "heat"))
        assert fetch(first).shape[:2] == (512, 512)  # one large heatmap over the image
        assert value(browser, "#stage input") == "stage 4 (deepest)"
        assert value(browser, "#word input") == "all words, averaged"
        choose(browser, "stage", "stage 1")
        choose(browser, "word", "3. infection")
        second = wait_for(browser, lambda d: (s := image_src(d, "heat")) != first and s)
        assert not np.array_equal(fetch(second), fetch(first))  # another map was drawn
        if not os.environ.get("TMC_DEMO_CKPT"):
            screenshot(browser, REPO / "docs" / "demo.png")
    finally:
        app.close()


# -- a checkpoint of an LViT-layout dataset, started as tmc-demo dataset.root=... -------------


@pytest.fixture(scope="module")
def lvit_checkpoint(trained_tiny, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model's checkpoint as if trained on QaTa: ``dataset=qata`` at a tiny LViT set.

    Only what the demo reads differs (the DataModule's name and recorded settings); the
    recorded root is gone, so the examples appear only through ``dataset.root=``.
    """
    base = tmp_path_factory.mktemp("lvit")
    root = make_lvit_dataset(base / "QaTa-COV19", size=64)
    ckpt = torch.load(trained_tiny["results"]["best_checkpoint"], weights_only=True)
    ckpt["QaTaDataModule"] = ckpt.pop("SyntheticDataModule")
    allowed = datamodule_keys("qata") - set(RECIPE_KEYS)
    hp = {k: v for k, v in ckpt["datamodule_hyper_parameters"].items() if k in allowed}
    ckpt["datamodule_hyper_parameters"] = {**hp, "root": str(base / "moved-away")}
    path = base / "qata_tiny.ckpt"
    torch.save(ckpt, str(path))
    return path, root


def test_dataset_examples_and_a_huge_image_in_the_status_line(browser, lvit_checkpoint, tmp_path):
    By = _by()
    ckpt, root = lvit_checkpoint
    huge = write_huge_png(tmp_path / "huge.png", 20000, 20000)
    with DemoProcess(f"ckpt_path={ckpt}", f"dataset.root={root}", "examples=3") as demo:
        browser.get(f"http://127.0.0.1:{demo.port}/")
        wait_for(browser, lambda d: status(d) == "ready")
        page = wait_for(browser, lambda d: examples_text(d, "Validation images"))
        assert "Validation images of the model's own data (qata" in page
        assert "Synthetic examples" not in page
        shown = [t for t in dict.fromkeys(VAL_TEXTS) if t[:SHOWN] in page]
        assert len(shown) == 3, page  # three distinct descriptions of its own images
        prefilled = value(browser, "#prompt textarea")
        assert prefilled in shown

        # Click an example: its image in view and its own description in the prompt.
        example(browser, shown[1]).click()
        wait_for(browser, lambda d: value(d, "#prompt textarea") == shown[1])
        wait_status(browser, ": 64 x 64 pixels, 8-bit gray")
        assert "covid_val_" in status(browser)
        assert wait_for(browser, lambda d: image_src(d, "preview"))
        segment_and_wait(browser)
        wait_status(browser, "done: ")
        assert image_src(browser, "overlay") and image_src(browser, "heat")

        # An error after a result: the message stays in the status line, the panels are emptied.
        from selenium.webdriver.common.keys import Keys

        prompt = browser.find_element(By.CSS_SELECTOR, "#prompt textarea")
        prompt.send_keys(Keys.CONTROL, "a")  # as a user empties it (clear() sends no input event)
        prompt.send_keys(Keys.BACKSPACE)
        browser.find_element(By.CSS_SELECTOR, "#segment").click()
        message = wait_status(browser, "error: ")
        assert "is text-guided and needs a prompt" in message, message
        wait_for(browser, lambda d: not image_src(d, "overlay"))
        assert not image_src(browser, "heat") and not image_src(browser, "prob")
        assert value(browser, "#area textarea") == ""
        no_badges = "//*[normalize-space(text())='Error']"
        assert not browser.find_elements(By.XPATH, no_badges)

        # A huge image: its size in the status line, not "not an image", and nothing shown.
        upload(browser, huge)
        message = wait_status(browser, "pixels; at most")
        assert "huge.png is 20000 x 20000 pixels; at most 8192 a side" in message, message
        assert message.startswith("error: ")
        assert not image_src(browser, "preview") and not image_src(browser, "overlay")
        browser.find_element(By.CSS_SELECTOR, "#prompt textarea").send_keys(VAL_TEXTS[0])
        browser.find_element(By.CSS_SELECTOR, "#segment").click()  # Segment anyway: same words
        time.sleep(3)
        assert "20000 x 20000 pixels; at most 8192 a side" in status(browser)
        assert not image_src(browser, "overlay")
        assert not browser.find_elements(By.XPATH, no_badges)
    assert demo.proc.returncode is not None


# -- a real QaTa-COV19 checkpoint, when one is at hand ----------------------------------------


def test_real_qata_checkpoint_screenshot(browser):
    """``TMC_DEMO_CKPT=<best.ckpt of a QaTa run> make test-browser`` writes docs/demo_qata.png."""
    ckpt = os.environ.get("TMC_DEMO_CKPT")
    if not ckpt:
        pytest.skip("no real-data checkpoint: set TMC_DEMO_CKPT=<QaTa run>/checkpoints/best-*.ckpt")
    data = os.environ.get("TMC_DEMO_DATA") or (str(SHARED_QATA) if SHARED_QATA.is_dir() else "")
    overrides = [f"ckpt_path={ckpt}", "examples=4"] + ([f"dataset.root={data}"] if data else [])
    with DemoProcess(*overrides) as demo:
        browser.get(f"http://127.0.0.1:{demo.port}/")
        wait_for(browser, lambda d: status(d) == "ready")
        assert examples_text(browser, "Validation images of the model's own data"), (
            "the real checkpoint's data was not found: set TMC_DEMO_DATA=/path/to/QaTa-COV19"
        )
        example(browser, value(browser, "#prompt textarea")).click()
        wait_status(browser, "pixels")
        segment_and_wait(browser)
        wait_status(browser, "done: ")
        wait_for(browser, lambda d: image_src(d, "heat"))
        screenshot(browser, REPO / "docs" / "demo_qata.png")
