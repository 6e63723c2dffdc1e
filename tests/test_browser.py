"""A real browser (headless Chromium driven by Selenium) uses the app like a newcomer would:
upload a photo, press Compare, wait for every model's result, then open the Leaderboard and
Training-curves tabs and check that their plotly charts drew.

Screenshots go to ``test-output/browser/``; with ``SEGZOO_UPDATE_SCREENSHOTS=1`` also to
``docs/screenshots/`` (the README's). The app serves the trained checkpoints in
``$SEGZOO_CHECKPOINTS`` or ``checkpoints/`` when there are any, otherwise tiny ones made here.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from test_app import app_args, launch, make_tiny_checkpoints

from segzoo.app.catalog import Catalog

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
OUTPUT = REPO_ROOT / "test-output" / "browser"
README_SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
EXAMPLE_PHOTO = REPO_ROOT / "examples" / "camvid-0001TP_009120.jpg"
EXAMPLE_MASK = REPO_ROOT / "examples" / "camvid-0001TP_009120.mask.png"
WIDTH = 1280

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),  # from gradio's internals
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Chromium and chromedriver not installed (Debian: apt-get install chromium chromium-driver)",
    ),
]


def browser_checkpoints(tmp: Path) -> Path:
    for candidate in (os.environ.get("SEGZOO_CHECKPOINTS"), REPO_ROOT / "checkpoints"):
        if candidate and len(Catalog.scan(candidate)):
            return Path(candidate)
    return make_tiny_checkpoints(tmp / "checkpoints")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (url, catalog)
    tmp = tmp_path_factory.mktemp("browser")
    checkpoints = browser_checkpoints(tmp)
    args = app_args(checkpoints, tmp, leaderboard=REPO_ROOT / "benchmarks" / "leaderboard.json")
    demo, url = launch(args)
    yield url, Catalog.scan(checkpoints)
    demo.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a selenium WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={WIDTH},1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def screenshot(driver, name: str) -> Path:  # noqa: ANN001
    """The whole page (the window grows to the page's height), saved as ``name``.png."""
    height = 0
    for _ in range(10):  # charts and images may still be growing the page: wait until it settles
        time.sleep(0.5)
        now = driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
        )
        if now == height:
            break
        height = now
        chrome = driver.execute_script("return window.outerHeight - window.innerHeight")  # tabs, address bar
        driver.set_window_size(WIDTH, min(max(height, 800), 4000) + chrome)
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    if os.environ.get("SEGZOO_UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SCREENSHOTS / f"{name}.png")
    driver.set_window_size(WIDTH, 1000)
    return path


def open_tab(driver, wait, title: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    def find(d):  # noqa: ANN001, ANN202
        return next((t for t in d.find_elements(By.CSS_SELECTOR, "button[role=tab]") if t.text == title), None)

    tab = wait.until(find)
    tab.click()


def test_compare_then_leaderboard_then_curves(app, browser) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, catalog = app
    dataset = catalog.datasets[0]  # the page's default choice
    models = catalog.label_set(dataset).entries
    wait = WebDriverWait(browser, 60)
    browser.get(url)

    # Compare: upload a photo (and its ground truth where it belongs to this label set).
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))[0].send_keys(str(EXAMPLE_PHOTO))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo img"))
    if dataset.startswith("camvid"):
        browser.find_element(By.XPATH, "//*[normalize-space(text())='Ground truth (optional)']").click()
        upload = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ground-truth input[type=file]"))
        upload[0].send_keys(str(EXAMPLE_MASK))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ground-truth img"))
    browser.find_element(By.ID, "compare-button").click()
    WebDriverWait(browser, 300).until(lambda d: "on your" in d.find_element(By.ID, "status").text)
    status = browser.find_element(By.ID, "status").text
    assert f"{len(models)} model" in status and "480×360" in status, status
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results img")) >= len(models))
    captions = browser.find_element(By.ID, "results").text
    for entry in models:
        assert entry.label in captions
    table = browser.find_element(By.ID, "results-table").text
    assert all(entry.label.split(" ")[0] in table for entry in models)
    if len(models) > 1:
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#disagreement img"))
    assert browser.find_element(By.ID, "legend").text.split()[0] == catalog.label_set(dataset).class_names[0]
    screenshot(browser, "compare")

    # Leaderboard: the table and three plotly charts.
    open_tab(browser, wait, "Leaderboard")
    for chart in ("miou-plot", "tradeoff-plot", "class-plot"):
        wait.until(lambda d, c=chart: d.find_elements(By.CSS_SELECTOR, f"#{c} .js-plotly-plot .main-svg"))
    board = wait.until(lambda d: d.find_element(By.ID, "leaderboard-table"))
    wait.until(lambda d: models[0].key in board.text)
    if any(e.metrics().get("miou") is not None for e in models):
        assert browser.find_elements(By.CSS_SELECTOR, "#miou-plot .barlayer .trace")  # bars, not "no data"
        assert browser.find_elements(By.CSS_SELECTOR, "#class-plot .heatmaplayer, #class-plot .hm")
    screenshot(browser, "leaderboard")

    # Training curves: loss and validation mIoU, one line per model (and split) with a history.
    open_tab(browser, wait, "Training curves")
    for chart in ("loss-plot", "val-miou-plot"):
        wait.until(lambda d, c=chart: d.find_elements(By.CSS_SELECTOR, f"#{c} .js-plotly-plot .main-svg"))
    with_history = [e for e in models if e.history_path.is_file()]
    if with_history:
        lines = "#val-miou-plot .scatterlayer .trace"
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, lines)) == len(with_history))
    screenshot(browser, "curves")
