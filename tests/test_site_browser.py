"""The static site in a real browser: Debian's headless Chromium, driven by selenium through Debian's
chromedriver (never a downloaded one). Each page loads from disk (file://) without a console error, a
click on a column header sorts the leaderboard's rows, and the bandit page's screenshot is saved (to
tmp_path, and to $RL2BENCH_SCREENSHOT_DIR when set).

Skips only where chromium, chromedriver or selenium is missing and RL2BENCH_REQUIRE_BROWSER is unset (CI
sets it: there the test must run). Install: ``apt-get install chromium chromium-driver`` and
``pip install -e ".[site]"``."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from rl2bench.cli import main
from rl2bench.site import png_size

pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parents[1]
RUNS = [ROOT / "leaderboard" / "runs" / family for family in ("mab", "mdp", "maze")]
PAGES = ("index.html", "mab.html", "mdp.html", "maze.html")

# Errors the page raises after load are collected by the page itself too (a console log can miss them).
COLLECT_ERRORS = ("window.__errors = window.__errors || [];"
                  "window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });")


def browser_or_skip():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
    missing = [name for name, found in (("chromium", chromium), ("chromedriver", driver_path),
                                        ("selenium", webdriver)) if not found]
    if missing:
        why = (f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver; "
               f"pip install -e '.[site]')")
        if os.environ.get("RL2BENCH_REQUIRE_BROWSER"):
            pytest.fail(f"RL2BENCH_REQUIRE_BROWSER is set but {why}")
        pytest.skip(why)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,1800", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


@pytest.fixture(scope="module")
def driver():
    browser = browser_or_skip()
    browser.set_page_load_timeout(60)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    assert main(["site", *map(str, RUNS), "--out", str(out)]) == 0
    return out


def load(driver, site: Path, name: str) -> None:
    driver.get((site / name).as_uri())
    driver.execute_script(COLLECT_ERRORS)


def console_errors(driver) -> list[str]:
    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return severe + list(driver.execute_script("return window.__errors || [];"))


@pytest.mark.parametrize("name", PAGES)
def test_each_page_loads_from_disk_without_a_console_error(driver, site, name):
    load(driver, site, name)
    assert driver.title.startswith("rl2bench")
    broken = driver.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);")
    assert not broken, f"pictures that did not load: {broken}"
    assert not console_errors(driver), console_errors(driver)


def column(driver, index: int) -> list[float]:
    """The data-values of the leaderboard's column ``index`` in the order the rows are shown (empty: nan)."""
    return [float(v) if v else float("nan") for v in driver.execute_script(
        "return Array.from(document.querySelector('table.leaderboard').tBodies[0].rows)"
        ".map(r => r.cells[arguments[0]].getAttribute('data-value'));", index)]


def test_a_click_on_a_column_header_sorts_the_rows(driver, site, tmp_path):
    from selenium.webdriver.common.by import By

    load(driver, site, "mab.html")
    headers = driver.find_elements(By.CSS_SELECTOR, "table.leaderboard thead th")
    gittins = next(i for i, h in enumerate(headers) if h.get_attribute("data-algorithm") == "gittins")
    cells_before = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody th")]
    before = column(driver, gittins)
    assert before != sorted(before, reverse=True)  # the protocol's row order is not already sorted

    headers[gittins].click()
    after = column(driver, gittins)
    assert after == sorted(before, reverse=True)
    assert headers[gittins].get_attribute("aria-sort") == "descending"
    cells_after = [c.text for c in driver.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody th")]
    assert cells_after != cells_before and sorted(cells_after) == sorted(cells_before)

    headers[gittins].click()  # again: the other way
    assert column(driver, gittins) == sorted(before)
    headers[0].click()  # the cell column: back to the protocol's order
    assert [c.text for c in driver.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody th")] == cells_before
    assert not console_errors(driver), console_errors(driver)


def test_the_bandit_page_screenshot(driver, site, tmp_path):
    load(driver, site, "mab.html")
    shot = tmp_path / "screenshot-mab.png"  # the whole page, beyond the window
    capture = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    shot.write_bytes(base64.b64decode(capture["data"]))
    width, height = png_size(shot.read_bytes())
    assert width >= 1000 and height > driver.execute_script("return window.innerHeight;")
    if os.environ.get("RL2BENCH_SCREENSHOT_DIR"):
        folder = Path(os.environ["RL2BENCH_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, folder / shot.name)
