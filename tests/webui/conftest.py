"""Fixtures for the web UI suite: headless Chromium from Debian's packages, a controller with a fleet.

Selenium drives /usr/bin/chromium through /usr/bin/chromedriver (packages
chromium and chromium-driver, installed by scripts/setup.sh). Selenium
Manager is never asked for a driver (explicit paths, SE_OFFLINE=true), so
nothing is downloaded at test time. Screenshots go to out/ui/.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "rollout"))

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT_DIR = ROOT / "out" / "ui"
WINDOW = (1400, 1100)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            pytest.fail(f"{path} is missing: install the Debian package {package} (scripts/setup.sh)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot():
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def save(driver, name: str, *, full_page: bool = True) -> Path:
        path = SCREENSHOT_DIR / f"{name}.png"
        if full_page:  # grow the window to the document height for the shot, then restore it
            height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), 4000)
            driver.set_window_size(WINDOW[0], max(WINDOW[1], height))
            time.sleep(0.2)
        driver.save_screenshot(str(path))
        driver.set_window_size(*WINDOW)
        assert path.stat().st_size > 10_000, f"{path} looks empty"
        return path

    return save
