"""The Allure report as a reader sees it, in a real browser; no VMs.

A small pytest session shaped like a failover suite (steps, a timeline chart,
a timing attachment, the run's environment; one case failing its verdict, one
stopped by a harness error) writes ``--alluredir``; ``dcnlab report`` builds
the HTML; a thread serves it on 127.0.0.1; Debian's Chromium, headless through
chromedriver, reads it. Nothing but 127.0.0.1 is contacted.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.cli import dcnlab

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT = 30  # seconds for any one thing to appear; the report renders in about one

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): ./dev setup installs them",
)

T = TypeVar("T")

# Shaped like suites/failover/test_failover.py, through the same allure_glue calls.
SESSION = """
import json

from dcnlab.pytest_plugin import allure_glue
from dcnlab.core.errors import WaitTimeout
from dcnlab.report.timing import Environment

TIMELINE = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="480" height="80">'
    '<rect width="480" height="80" fill="#2a9d8f"/><text x="12" y="48" font-size="24">fault at 0.0 s</text></svg>'
)


def test_power_off_web(tmp_path, timing_report):
    timing_report.environment = Environment(
        "dcn-debian", "d997512adccc9979", "/cache/disk.qcow2", "default.yaml", "tcg", "embedded",
        versions={"pacemaker": "2.1.5-1+deb12u1", "corosync": "3.1.7-1"},
    )
    with allure_glue.step("inject power-off on dcn1, where web runs"):
        pass
    with allure_glue.step("observe until web settles (relocated expected)"):
        pass
    with allure_glue.step("heal power-off and wait for a healthy cluster"):
        pass
    (tmp_path / "timeline.svg").write_text(TIMELINE)
    (tmp_path / "timing.json").write_text(json.dumps({"fault": "power-off", "seconds": {"downtime": 41.25}}))
    allure_glue.attach_file(tmp_path / "timeline.svg", "timeline chart")
    allure_glue.attach_file(tmp_path / "timing.json", "timing")
    with allure_glue.step("verdict: PASS"):
        pass


def test_freeze_app():
    passed = False
    with allure_glue.step("verdict: FAIL"):
        assert passed, "FAIL: app relocated, node fenced (fault on dcn2)\\n  downtime 95.0 s > 60 s"


def test_kill_corosync_web():
    with allure_glue.step("inject kill-corosync on dcn3, where web runs"):
        raise WaitTimeout("waited 120s for dcn3 to answer SSH on 10.77.0.13; last result: Connection refused")
"""


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("allure")
    suite = work / "suites" / "failover"
    suite.mkdir(parents=True)
    (suite / "test_sample_failover.py").write_text(textwrap.dedent(SESSION))
    (work / "pytest.ini").write_text("[pytest]\n")  # the session's rootdir, away from this repo's config
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--alluredir", "results", "suites"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr  # two of three fail, on purpose
    assert (work / "results" / "environment.properties").is_file(), "the session end wrote no environment"
    assert (work / "results" / "categories.json").is_file(), "the session end wrote no categories"
    built = dcnlab("report", "--results", str(work / "results"), "--out", str(work / "html"), timeout=300)
    assert built.returncode == 0, built.stderr
    assert "http.server" in built.stdout  # it says how to view the report
    return work / "html"


@pytest.fixture(scope="module")
def report_url(report_dir: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(report_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="allure-report-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        # Without these Chromium's own background connections are refused on
        # this closed network and the page connections with them.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Every host name fails to resolve: the report must need nothing but 127.0.0.1.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    # An explicit driver path: Selenium Manager (which downloads drivers) is never run.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, what: str, condition: Callable[[WebDriver], T]) -> T:
    """``condition`` until truthy, at most WAIT seconds; the error names ``what``."""
    result: T = WebDriverWait(driver, WAIT).until(condition, message=f"waited {WAIT}s for {what}")
    return result


def _titled(driver: WebDriver, testid: str, text: str) -> WebElement | None:
    return next((e for e in driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]') if e.text == text), None)


def _texts(scope: WebDriver | WebElement, testid: str) -> list[str]:
    return [e.text for e in scope.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')]


def open_results(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_for(driver, "the results tree", lambda d: _titled(d, "tree-leaf-title", "test_power_off_web"))


def open_test(driver: WebDriver, url: str, name: str) -> None:
    open_results(driver, url)
    leaf = _titled(driver, "tree-leaf-title", name)
    assert leaf is not None
    leaf.click()
    wait_for(driver, f"the page of {name}", lambda d: name in _texts(d, "test-result-info-title"))


def attachment(driver: WebDriver, name: str) -> WebElement:
    """The attachment block called ``name``, opened."""
    blocks = driver.find_elements(By.CSS_SELECTOR, '[data-testid="test-result-attachment"]')
    headers = [_texts(b, "test-result-attachment-header")[0].split("\n") for b in blocks]  # number, name, type, size
    block = next((b for b, header in zip(blocks, headers, strict=True) if name in header), None)
    assert block is not None, f"no attachment {name!r} among {headers}"
    if not block.find_elements(By.CSS_SELECTOR, '[data-testid="test-result-attachment-arrow-opened"]'):
        block.find_element(By.CSS_SELECTOR, '[data-testid="test-result-attachment-header"] button').click()
    return block


def test_results_tree_shows_the_suites_and_their_tests(browser: WebDriver, report_url: str) -> None:
    open_results(browser, report_url)
    sections = _texts(browser, "tree-section-title")
    assert "suites.failover" in sections, sections  # parentSuite: the package
    assert "test_sample_failover" in sections, sections  # suite: the module
    assert {"test_power_off_web", "test_freeze_app", "test_kill_corosync_web"} <= set(
        _texts(browser, "tree-leaf-title")
    )


def test_case_shows_steps_timeline_image_and_timing(
    browser: WebDriver, report_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    open_test(browser, report_url, "test_power_off_web")
    body = [
        "inject power-off on dcn1, where web runs",
        "observe until web settles (relocated expected)",
        "heal power-off and wait for a healthy cluster",
        "verdict: PASS",
    ]
    steps = wait_for(browser, "the steps", lambda d: _texts(d, "test-result-step-title"))
    assert body[0] in steps, steps  # set-up and tear-down (the fixtures) come as steps too
    assert steps[steps.index(body[0]) :][: len(body)] == body, steps

    chart = attachment(browser, "timeline chart")
    image = wait_for(browser, "the timeline chart image", lambda d: chart.find_elements(By.TAG_NAME, "img"))[0]
    # Loaded and decoded, not just present: a broken image has naturalWidth 0.
    width = wait_for(
        browser,
        "the timeline chart to render",
        lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image),
    )
    assert width == 480
    assert image.size["width"] > 0
    assert image.size["height"] > 0

    timing = attachment(browser, "timing")
    code = wait_for(
        browser,
        "the timing attachment's content",
        lambda d: timing.find_elements(By.CSS_SELECTOR, '[data-testid="code-attachment-content"]'),
    )[0]
    assert '"downtime": 41.25' in code.text
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", timing)
    browser.save_screenshot(str(tmp_path_factory.getbasetemp() / "allure-report-case.png"))


def test_overview_shows_the_environment(browser: WebDriver, report_url: str) -> None:
    open_results(browser, report_url)
    items = wait_for(browser, "the environment", lambda d: _texts(d, "metadata-item"))
    shown = dict(item.split("\n", 1) for item in items if "\n" in item)
    assert shown.get("image") == "dcn-debian d997512adccc9979", items
    assert shown.get("accelerator") == "tcg", items
    assert shown.get("hypervisor") == "embedded", items
    assert shown.get("version.pacemaker") == "2.1.5-1+deb12u1", items
    assert shown.get("version.corosync") == "3.1.7-1", items


def test_categories_keep_product_failures_apart_from_harness_errors(
    browser: WebDriver, report_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    open_results(browser, report_url)
    browser.find_element(By.CSS_SELECTOR, '[data-testid="nav-tab-categories"]').click()
    wait_for(browser, "the categories", lambda d: len(d.find_elements(By.CSS_SELECTOR, 'div[id^="cat:"]')) == 2)
    for category in browser.find_elements(By.CSS_SELECTOR, 'div[id^="cat:"]'):
        if not _texts(category, "tree-leaf-title"):  # collapsed
            category.find_element(By.CSS_SELECTOR, '[data-testid="tree-arrow"]').click()

    def tests_by_category(d: WebDriver) -> dict[str, list[str]]:
        found = {}
        for category in d.find_elements(By.CSS_SELECTOR, 'div[id^="cat:"]'):
            name = _texts(category, "tree-section-title")[0]
            found[name] = _texts(category, "tree-leaf-title")
        return found if all(found.values()) else {}

    found = wait_for(browser, "the tests of each category", tests_by_category)
    assert found == {
        "Certification failures": ["test_freeze_app"],
        "Harness and infrastructure errors": ["test_kill_corosync_web"],
    }
    browser.save_screenshot(str(tmp_path_factory.getbasetemp() / "allure-report-categories.png"))
