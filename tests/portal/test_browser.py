"""The portal in a real browser: Debian's chromium driven by Selenium through Debian's chromedriver.

Flows a person goes through (sign in by keyboard, a commune refused another commune's URL, finance
closing a month, a download equal to the API's bytes), table semantics checked in the DOM, and a
screenshot of every page at 1280 px and at a phone's width, kept in `test-artifacts/portal/`.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import require_binary

from .conftest import FINANCE, GIVORS, OPERATIONS, VENISSIEUX, Portal

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SITIVMON_ARTIFACTS", REPO / "test-artifacts")) / "portal"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PHONE = (390, 844)
DESKTOP = (1280, 900)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def driver(downloads: Path) -> Iterator[WebDriver]:
    require_binary(CHROMIUM)
    require_binary(CHROMEDRIVER)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={DESKTOP[0]},{DESKTOP[1]}", "--lang=fr-FR", "--no-first-run"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def shoot(driver: WebDriver, name: str) -> None:
    """Screenshots at desktop and phone width: the artefacts a person looks at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("document.activeElement && document.activeElement.blur()")
    for label, (w, h) in (("1280", DESKTOP), ("phone", PHONE)):
        driver.set_window_size(w, h)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(w, min(max(int(height), h), 6000))
        driver.save_screenshot(str(ARTIFACTS / f"{name}-{label}.png"))
        if label == "phone":  # nothing may stick out sideways on a phone but scrollable table regions
            overflow = driver.execute_script(
                "return [...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll') &&"
                " e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).map(e => e.tagName)"
            )
            assert overflow == [], f"{name}: elements wider than a phone: {overflow[:5]}"
    driver.set_window_size(*DESKTOP)


def check_tables(driver: WebDriver) -> int:
    """Every table has a caption, a header row of `th scope=col`, and row headers `th scope=row`."""
    tables = driver.find_elements(By.CSS_SELECTOR, "main table")
    for table in tables:
        assert table.find_elements(By.TAG_NAME, "caption"), table.get_attribute("outerHTML")[:200]
        heads = table.find_elements(By.CSS_SELECTOR, "thead th")
        assert heads and all(h.get_attribute("scope") == "col" for h in heads)
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
            assert row.find_elements(By.CSS_SELECTOR, "th[scope=row]")
    return len(tables)


def sign_in_by_keyboard(driver: WebDriver, base: str, token: str) -> None:
    """Type the token into the focused field and press Enter: no mouse at all."""
    driver.get(base + "/ui/login")
    focused = driver.switch_to.active_element
    assert focused.get_attribute("id") == "token"  # the field has the focus on arrival
    ActionChains(driver).send_keys(token, Keys.ENTER).perform()
    WebDriverWait(driver, 15).until(lambda d: "/ui/login" not in d.current_url)
    ActionChains(driver).send_keys(Keys.TAB).perform()  # the first stop on every page: "skip to content"
    skip = driver.switch_to.active_element
    assert skip.get_attribute("class") == "skip" and skip.is_displayed()


def test_commune_signs_in_and_sees_only_its_commune(portal_in_thread: tuple[str, Portal], driver: WebDriver) -> None:
    base, _ = portal_in_thread
    driver.get(base + "/ui/login")
    shoot(driver, "01-sign-in")
    sign_in_by_keyboard(driver, base, VENISSIEUX)
    assert driver.current_url.endswith("/ui/communes/venissieux/2026-10")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Vénissieux — octobre 2026"
    text = driver.find_element(By.TAG_NAME, "body").text
    for other in ("Givors", "Grigny", "Corbas", "Saint-Chamond", "Rive-de-Gier", "Pierre-Bénite", "Vaulx-en-Velin"):
        assert other not in text
    assert check_tables(driver) >= 2 + 6  # amounts, indicators and each chart's data table
    assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart title")) >= 6
    shoot(driver, "02-commune-venissieux")
    driver.get(base + "/ui/communes/givors/2026-10")  # a crafted URL of another commune
    assert "Accès refusé" in driver.find_element(By.TAG_NAME, "main").text
    assert "Givors" not in driver.find_element(By.TAG_NAME, "body").text
    shoot(driver, "03-commune-refused")
    driver.get(base + "/ui/links")
    assert "venissieux-fibre" in driver.page_source and "givors-fibre" not in driver.page_source
    shoot(driver, "04-links-commune")


def test_finance_closes_a_month_and_the_revision_appears(portal_in_thread: tuple[str, Portal],
                                                         driver: WebDriver) -> None:
    base, state = portal_in_thread
    sign_in_by_keyboard(driver, base, FINANCE)
    assert driver.current_url.endswith("/ui/months/2026-10")
    assert check_tables(driver) >= 3
    shoot(driver, "05-month-overview")
    driver.find_element(By.LINK_TEXT, "Clôturer le mois").click()
    assert "figés comme révision 1" in driver.find_element(By.TAG_NAME, "main").text
    shoot(driver, "06-close-confirm")
    button = driver.find_element(By.ID, "confirm-close")
    button.send_keys(Keys.ENTER)  # the keyboard can close the month too
    WebDriverWait(driver, 15).until(lambda d: "/revisions" in d.current_url)
    notice = driver.find_element(By.ID, "notice").text
    assert notice == "octobre 2026 clôturé : révision 1."
    assert [r.revision for r in state.service.archive.revisions("2026-10")] == [1]
    shoot(driver, "07-revisions")
    driver.get(base + "/ui/months/2026-10")
    assert "clôturé" in driver.find_element(By.CSS_SELECTOR, ".status").text
    driver.get(base + "/ui/communes/givors/2026-10")  # finance reads any commune
    assert driver.find_element(By.TAG_NAME, "h1").text == "Givors — octobre 2026"
    driver.get(base + "/ui/months/2026-10?lang=en")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Month overview — October 2026"
    shoot(driver, "08-month-overview-en")


def test_download_equals_the_api_bytes(portal_in_thread: tuple[str, Portal], driver: WebDriver,
                                       downloads: Path) -> None:
    base, _ = portal_in_thread
    sign_in_by_keyboard(driver, base, GIVORS)
    driver.find_element(By.PARTIAL_LINK_TEXT, "CSV (fr)").click()
    deadline = time.monotonic() + 20
    files: list[Path] = []
    while time.monotonic() < deadline:
        files = [p for p in downloads.iterdir() if not p.name.endswith(".crdownload")]
        if files:
            break
        time.sleep(0.2)
    assert [p.name for p in files] == ["sitivmon-2026-10-givors.csv"]
    request = urllib.request.Request(base + "/api/v1/reports/2026-10.csv?flavor=fr",
                                     headers={"Authorization": f"Bearer {GIVORS}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        api = response.read()
    assert files[0].read_bytes() == api
    shutil.copy(files[0], ARTIFACTS / "09-download-givors.csv") if ARTIFACTS.exists() else None


def test_operations_link_status(portal_in_thread: tuple[str, Portal], driver: WebDriver) -> None:
    base, _ = portal_in_thread
    sign_in_by_keyboard(driver, base, OPERATIONS)
    assert driver.current_url.endswith("/ui/links")
    assert check_tables(driver) == 3
    rows = driver.find_elements(By.CSS_SELECTOR, "tr.state-down")
    assert len(rows) == 1 and "givors-fibre" in rows[0].text
    shoot(driver, "10-links-operations")
