"""The dashboard in a real browser: Debian's headless Chromium, driven by
Selenium, against a real app process (``dashboard_app.py``) whose admin
server serves the page, on the backend chosen with ``--backend``.

One app and one browser serve the whole module. Every wait is on a
condition of the page (WebDriverWait), never on the clock. With
``DBOS_SCREENSHOTS=DIR`` the list and workflow pages are saved there as
PNGs (the README's screenshots come from here).
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

from tests.acceptance.child import Child, children_of
from tests.acceptance.dashboard_app import MARKUP_ID
from tests.conftest import postgres_url
from tests.probe import drop_database

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("dashboard_app.py"))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30.0  # an upper bound reached only when a test is already failing

if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f"the browser tests need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install -y chromium chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium (the test extra)")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard of one launched app, on a fresh system database."""
    folder = tmp_path_factory.mktemp("dashboard")
    sys_url = (f"sqlite:///{folder / 'system.sqlite'}" if backend == "sqlite"
               else postgres_url(f"dbos_test_{uuid.uuid4().hex[:12]}"))
    port = free_port()
    try:
        with children_of(APP, folder) as start:
            app: Child = start("shop", sys_url, str(port))
            app.expect("READY")
            yield f"http://127.0.0.1:{port}/dashboard/"
            app.stop()
    finally:
        if backend == "postgres":
            drop_database(sys_url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations and script errors
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The dashboard in the browser, with waits that outlast the page's live re-rendering."""

    def __init__(self, driver: Any, url: str) -> None:
        self.driver = driver
        self.url = url

    def open(self, fragment: str) -> None:
        self.driver.get(self.url + fragment)
        self.driver.refresh()  # a change of fragment alone would not reload the page

    def until(self, condition: Callable[[Any], Any], what: str) -> Any:
        wait = WebDriverWait(self.driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException])
        return wait.until(condition, message=f"waiting for {what}; notice: {self.notice()}")

    def notice(self) -> str:
        try:
            return str(self.driver.find_element(By.ID, "notice").text)
        except Exception:
            return ""

    def texts(self, css: str) -> List[str]:
        """The texts of the elements, read again if the live refresh replaced them meanwhile."""
        found = self.until(lambda d: ([e.text for e in d.find_elements(By.CSS_SELECTOR, css)],), css)
        return list(found[0])

    def text(self, css: str) -> str:
        return str(self.until(lambda d: (d.find_element(By.CSS_SELECTOR, css).text,), css)[0])

    def click(self, css: str) -> None:
        """Click, again if the live refresh replaced the element meanwhile."""
        def clicked(driver: Any) -> bool:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return True
        self.until(clicked, f"clicking {css}")

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("DBOS_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(folder) / name))


@pytest.fixture
def page(browser: Any, app_url: str) -> Page:
    return Page(browser, app_url)


def row_ids(page: Page) -> List[str]:
    return [r.get_attribute("data-id") for r in page.driver.find_elements(By.CSS_SELECTOR, "tr.workflow-row")]


def test_filter_the_list(page: Page) -> None:
    page.open("#/workflows")
    page.until(lambda d: "stuck-1" in row_ids(page), "the list")
    page.until(lambda d: page.texts("#charts .title"), "the charts")
    page.screenshot("dashboard-list.png")
    Select(page.driver.find_element(By.ID, "filter-status")).select_by_value("SUCCESS")
    page.driver.find_element(By.ID, "filter-id_prefix").send_keys("order-")
    page.click("#apply")
    page.until(lambda d: row_ids(page) == ["order-3", "order-2", "order-1"], "the three finished orders")
    assert set(page.texts("tr.workflow-row .status")) == {"SUCCESS"}


def test_recorded_markup_is_shown_as_text(page: Page) -> None:
    page.open("#/workflows")
    page.until(lambda d: MARKUP_ID in row_ids(page), "the workflow whose ID is markup")
    assert page.texts("#workflow-table b") == []  # no <b> element came from the data
    assert MARKUP_ID in page.texts("tr.workflow-row td.id")


def test_open_a_workflow_and_see_its_steps(page: Page) -> None:
    page.open("#/workflows")
    page.until(lambda d: "order-2" in row_ids(page), "order-2 in the list")
    page.click("tr.workflow-row[data-id='order-2'] a")
    page.until(lambda d: page.text("#wf-id") == "order-2", "the workflow page")
    page.until(lambda d: len(page.texts("#steps tr.step-row")) >= 3, "its steps")
    names = [t.split()[1] for t in page.texts("#steps tr.step-row")]
    assert names[:2] == ["reserve", "charge"] and "ship" in names
    assert page.text("#wf-status") == "SUCCESS" and "shipped 2" in page.text("#wf-output")
    assert "paid" in page.text("#events")
    page.screenshot("dashboard-workflow.png")


def test_a_failed_workflow_shows_its_error(page: Page) -> None:
    page.open("#/workflow/order-bad")
    page.until(lambda d: page.text("#wf-status") == "ERROR", "the failed workflow")
    assert "card declined for bad" in page.text("#wf-error")


def test_cancel_a_running_workflow(page: Page) -> None:
    page.open("#/workflow/stuck-1")
    page.until(lambda d: page.text("#wf-status") == "PENDING", "the running workflow")
    page.click("#btn-cancel")
    page.until(lambda d: page.text("#wf-status") == "CANCELLED", "the cancellation")


def test_fork_from_step_2_and_see_the_new_workflow(page: Page) -> None:
    page.open("#/workflow/order-1")
    page.until(lambda d: len(page.texts("#steps tr.step-row")) >= 3, "order-1's steps")
    Select(page.driver.find_element(By.ID, "fork-step")).select_by_value("2")
    page.click("#btn-fork")
    page.until(lambda d: page.text("#wf-id") not in ("order-1", ""), "the forked workflow's page")
    assert "order-1" in page.text("#wf-fields")  # forked from
    page.until(lambda d: page.text("#wf-status") == "SUCCESS", "the fork to finish")
    assert "shipped 1" in page.text("#wf-output")


def test_pause_a_schedule(page: Page) -> None:
    page.open("#/schedules")
    row = "tr.schedule-row[data-name='nightly-report']"
    page.until(lambda d: page.text(f"{row} .status-cell") == "ACTIVE", "the active schedule")
    page.click(f"{row} button.pause")
    page.until(lambda d: page.text(f"{row} .status-cell") == "PAUSED", "the paused schedule")


def test_queues_and_executors_pages(page: Page) -> None:
    page.open("#/executors")
    page.until(lambda d: "shop-1" in page.text("#executor-table"), "this app's executor")
    page.open("#/queues")
    page.until(lambda d: page.driver.find_elements(By.ID, "queue-table"), "the queues table")


def test_the_page_broke_no_rule_of_its_own_policy(page: Page) -> None:
    """Every view drawn so far ran under the page's Content-Security-Policy without an error."""
    page.open("#/workflow/order-2")
    page.until(lambda d: len(page.texts("#steps tr.step-row")) >= 3, "a step timeline (inline styles)")
    errors = [e["message"] for e in page.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
