"""A real browser drives the app: upload two paintings, click Analyze, see two predictions and two Grad-CAMs.

Headless Chromium through selenium and chromedriver (Debian's `chromium` and
`chromium-driver`, installed by .ci/run). The page is the one users get; nothing
is mocked. A screenshot goes to the test's tmp folder, and to $TIM_SCREENSHOT
when set. The app lists the bundled model first when there is one, so with it
the screenshot shows the real model; $TIM_SCREENSHOT_IMAGES (paths separated by
os.pathsep) uploads those pictures instead of generated ones.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from app_helpers import make_checkpoint, picture, save
from processes import free_port

from tim.app import TimApp
from tim.catalog import ModelCatalog
from tim.examples import example_images

CHROMIUM = os.environ.get("TIM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
    pytest.skip(f"headless browser test needs {CHROMIUM} and chromedriver (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (requirements-dev.txt)")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TIMEOUT = 180  # seconds; a busy 2-core CI machine loads the page and runs two CAMs well within this


@pytest.fixture
def server(tmp_path):
    make_checkpoint(tmp_path / "models" / "tiny-effnet", "test_efficientnet", image_size=128)
    app = TimApp(ModelCatalog.discover(tmp_path / "models", []), examples=example_images(tmp_path / "examples"))
    port = free_port()
    app.launch("127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.demo.close()


@pytest.fixture
def browser(tmp_path):
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def outermost(driver, css: str) -> list:
    """Elements matching `css` that are not inside another match (Gradio puts elem_classes on nested wrappers)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(e => !e.parentElement.closest(arguments[0]))", css)


def loaded_images(driver, css: str) -> int:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].filter(i => i.complete && i.naturalWidth > 0).length",
        css)


def test_upload_two_paintings_and_see_two_predictions_with_grad_cams(server, browser, tmp_path):
    env_images = os.environ.get("TIM_SCREENSHOT_IMAGES")
    if env_images:
        images = [Path(p).resolve() for p in env_images.split(os.pathsep)]
    else:
        images = [save(picture(360, 240, seed=1), tmp_path / "wide painting.jpg"),
                  save(picture(200, 300, seed=2), tmp_path / "tall painting.png")]
    wait = WebDriverWait(browser, TIMEOUT)
    browser.get(server)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#tim-files input[type=file]"))
    upload.send_keys("\n".join(str(p) for p in images))
    # the upload list shows each file once it has arrived (stem and suffix in separate elements)
    wait.until(lambda d: all(p.stem in d.find_element(By.ID, "tim-files").text for p in images))

    browser.find_element(By.ID, "tim-analyze").click()
    wait.until(lambda d: loaded_images(d, ".tim-cam img") >= len(images))

    # one answer per painting: an artist with its confidence, or (these are random strokes, and the default
    # bundled model has an unknown-artist decision) "Not one of the N artists this model knows", or "This doesn't
    # look like a painting"; a photo of one painting on a wall has it outlined on the picture and answers the
    # painting, straightened
    predictions = outermost(browser, ".tim-prediction, .tim-unknown, .tim-not-painting")
    assert len(predictions) == len(images) and not outermost(browser, ".tim-error")
    for prediction, image in zip(predictions, images):
        assert image.name in prediction.text
        assert any(words in prediction.text for words in ("confidence", "artists this model knows",
                                                          "doesn't look like a painting"))
    assert loaded_images(browser, ".tim-original img") == len(images)
    assert f"Analysed {len(images)} of {len(images)}" in browser.find_element(By.ID, "tim-status").text

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, max(1000, height))
    shot = tmp_path / "tim-app.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("TIM_SCREENSHOT"):
        Path(os.environ["TIM_SCREENSHOT"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, os.environ["TIM_SCREENSHOT"])
