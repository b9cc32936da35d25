"""``nnchain ui`` in a real headless Chromium: which view an experiment opens on.

MLflow 3's UI has two views of an experiment: the model-training one (the runs table,
tab ``runs``) and the GenAI one (a traces overview with token usage, tab ``overview``).
In MLflow 3.17 the view follows the browser's "GenAI | Model training" switch (the URL's
``workflowType``, else the choice stored in the browser, else GenAI), not the experiment's
``mlflow.experimentKind`` tag. The address ``nnchain ui`` prints is its start page, which
stores "Model training" in a browser that has no choice yet. These tests follow that
address as a user does, from a fresh browser profile each.

Needs the Debian ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them)
and ``selenium``; skipped without them.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli_ui import UiProcess

from nnchain.cli.main import main
from nnchain.cli.ui_app import CHOICE_KEY, START_PATH
from nnchain.tracking.store import KIND_TAG, KIND_TRAINING, open_client, resolve_tracking_uri

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,900"]
EXPERIMENT = "nnchain-train"  # train's default experiment
UNTAGGED = "made-elsewhere"
RUN_NAME = "xor-run"
XOR = """
seed: 3
data: {name: xor, n_samples: 32, noise: 0.05, val_fraction: 0.25}
model: {hidden: [4], activation: tanh}
train: {epochs: 3, lr: 0.8}
"""
# what each view shows once loaded: the runs table's column, the GenAI overview's chart
RUNS_MARK, GENAI_MARK = "Run Name", "Token Usage"
LOAD_TIMEOUT = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()),
                       reason=f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install "
                              "chromium chromium-driver (.ci/run does)"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")


class QuietUi(UiProcess):
    """``nnchain ui`` whose stderr (the server's log of every request) is drained as it
    comes, so a browser's many requests cannot fill the pipe and stall the server."""

    def __init__(self, store: Path) -> None:
        super().__init__(store)
        self.log: list[str] = []
        threading.Thread(target=lambda: self.log.extend(self.process.stderr),
                         daemon=True).start()

    def stop_gracefully(self) -> int:
        self.process.terminate()  # SIGTERM: nnchain ui stops its server's process group
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``nnchain ui`` on a store holding one real ``nnchain train`` run and an experiment
    made with MLflow's own client (no kind tag): the address it prints and the experiments'
    ids by name. The server stops by SIGTERM after the module."""
    home = tmp_path_factory.mktemp("ui-browser")
    spec = home / "xor.yaml"
    spec.write_text(XOR)
    store = home / "nnchain-runs"
    client = open_client(resolve_tracking_uri(str(store)))  # made here: the server opens it
    ui = QuietUi(store)  # it starts while the run is recorded
    try:
        result = CliRunner().invoke(main, ["train", str(spec), "--tracking-uri", str(store),
                                           "--run-name", RUN_NAME, "--quiet"])
        assert result.exit_code == 0, result.output
        assert client.get_experiment_by_name(EXPERIMENT).tags.get(KIND_TAG) == KIND_TRAINING
        client.create_experiment(UNTAGGED)
        ids = {e.name: e.experiment_id for e in client.search_experiments()}
        yield ui.wait_for_url(), ids
    finally:
        code = ui.stop_gracefully()
    assert code == 0, "".join(ui.log[-20:])


@pytest.fixture
def browser(tmp_path):
    """A fresh headless Chromium: an empty profile, so no earlier choice is remembered."""
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.shots = tmp_path  # where view() leaves its screenshots
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, what: str):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, LOAD_TIMEOUT, poll_frequency=0.2, ignored_exceptions=(
        NoSuchElementException, StaleElementReferenceException)).until(
        condition, message=f"{what}; at {driver.current_url}")


def click_experiment(driver, list_url: str, name: str) -> None:
    """Open the experiments list and click ``name``'s link, as a user does."""
    from selenium.webdriver.common.by import By

    driver.get(list_url)
    wait_for(driver, lambda d: (link := d.find_element(By.LINK_TEXT, name)).is_displayed()
             and link, f"no link to {name} on the experiments list").click()


def view(driver, experiment_id: str, shot: str) -> str:
    """The view the experiment page settles on: "runs" (the runs table) or "genai" (the
    GenAI overview), checked by both its tab in the address and what it renders."""
    from selenium.webdriver.common.by import By

    tab = wait_for(driver, lambda d: (m := re.search(rf"/experiments/{experiment_id}/(\w+)",
                                                     d.current_url)) and m.group(1),
                   f"experiment {experiment_id} did not open")
    text = wait_for(driver, lambda d: (t := d.find_element(By.TAG_NAME, "body").text)
                    and (RUNS_MARK in t or GENAI_MARK in t) and t,
                    f"experiment {experiment_id} showed neither view")
    driver.save_screenshot(str(driver.shots / f"{shot}.png"))
    if tab == "runs" and RUNS_MARK in text and GENAI_MARK not in text:
        return "runs"
    if tab == "overview" and GENAI_MARK in text and RUNS_MARK not in text:
        return "genai"
    return f"unclear: tab {tab!r}, page {text[:300]!r}"


def run_is_listed(driver) -> bool:
    from selenium.webdriver.common.by import By

    return wait_for(driver, lambda d: d.find_element(By.LINK_TEXT, RUN_NAME).is_displayed(),
                    f"run {RUN_NAME} is not in the runs table")


def test_an_nnchain_experiment_opens_on_its_runs_table(served, browser):
    url, ids = served
    click_experiment(browser, url, EXPERIMENT)
    assert view(browser, ids[EXPERIMENT], "nnchain") == "runs"
    assert run_is_listed(browser)
    # the choice is the browser's: an experiment made elsewhere opens the same
    click_experiment(browser, url, UNTAGGED)
    assert view(browser, ids[UNTAGGED], "untagged") == "runs"


def test_without_the_start_page_the_tag_alone_opens_the_genai_overview(served, browser):
    """Why the start page exists: the experiments list's own address, in a browser that
    never chose, opens even a tagged experiment on the GenAI overview."""
    url, ids = served
    click_experiment(browser, url.removesuffix(START_PATH) + "/#/experiments", EXPERIMENT)
    assert view(browser, ids[EXPERIMENT], "no-start-page") == "genai"


def test_a_users_own_choice_outlives_the_start_page(served, browser):
    """The start page only fills in a missing choice: "GenAI" picked on the switch stays."""
    from selenium.webdriver.common.by import By

    url, ids = served
    browser.get(url)
    wait_for(browser, lambda d: d.find_element(By.XPATH, "//*[text()='GenAI']"),
             "no 'GenAI' switch on the experiments list").click()
    wait_for(browser, lambda d: d.execute_script("return localStorage.getItem(arguments[0])",
                                                 CHOICE_KEY) == json.dumps("genai"),
             "the switch did not store GenAI")
    click_experiment(browser, url, EXPERIMENT)
    assert view(browser, ids[EXPERIMENT], "own-choice") == "genai"


# ---- a recorded sweep: `nnchain ui SWEEP`, the parent run, its children and its report -------
SWEEP = """
name: browse-grid
experiment: browse
seed: 0
metric: {name: val_cost, goal: minimize}
repeats: 2
data: {name: xor, n_samples: 32, noise: 0.05, val_fraction: 0.25}
model: {hidden: [4], activation: tanh}
train: {epochs: 5, lr: 0.5}
parameters:
  train.lr: {values: [0.1, 0.5]}
"""
REPORT_IMAGES = ("learning_curves.png", "gradient_flow.png", "param_train.lr.png")


class SweepUi(QuietUi):
    """``nnchain ui SWEEP``: the same server, its printed address going to the sweep."""

    def __init__(self, store: Path, sweep: str) -> None:
        import os
        import subprocess
        import sys

        from test_cli_ui import free_port

        self.port = free_port()
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
        env.pop("MLFLOW_TRACKING_URI", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nnchain", "ui", sweep, "--tracking-uri", str(store),
             "--port", str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env)
        self.lines, self.log = [], []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout),
                         daemon=True).start()
        threading.Thread(target=lambda: self.log.extend(self.process.stderr),
                         daemon=True).start()


@pytest.fixture(scope="module")
def served_sweep(tmp_path_factory, ray_local):
    """A real 4-trial sweep, then ``nnchain ui browse-grid`` on its store."""
    from nnchain.runner.sweep import SweepOptions, run_sweep

    home = tmp_path_factory.mktemp("ui-sweep")
    (home / "sweep.yaml").write_text(SWEEP)
    store = home / "nnchain-runs"
    result = run_sweep(str(home / "sweep.yaml"), [], SweepOptions(tracking_uri=str(store)))
    assert result.status == "FINISHED"
    ui = SweepUi(store, "browse-grid")
    try:
        yield ui.wait_for_url(), result, open_client(resolve_tracking_uri(str(store)))
    finally:
        code = ui.stop_gracefully()
    assert code == 0, "".join(ui.log[-20:])


def test_nnchain_ui_sweep_opens_on_the_parent_run_and_its_children(served_sweep, browser):
    from selenium.webdriver.common.by import By

    url, result, client = served_sweep
    assert url.endswith(f"?experiment={result.experiment_id}")
    browser.get(url)
    assert view(browser, result.experiment_id, "sweep-runs") == "runs"
    wait_for(browser, lambda d: d.find_element(By.LINK_TEXT, "browse-grid").is_displayed(),
             "the parent run browse-grid is not in the runs table")
    children = [run.info.run_name for run in client.search_runs(
        [result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")]
    assert len(children) == 4
    if not any(browser.find_elements(By.LINK_TEXT, name) for name in children):
        # nested runs start folded under their parent: unfold them as a user does
        parent = browser.find_element(By.LINK_TEXT, "browse-grid")
        wait_for(browser, lambda d: parent.find_element(
            By.XPATH, "./ancestor::*[@role='gridcell'][1]//button"),
            "no control that unfolds the parent's nested runs").click()
    for name in children:
        wait_for(browser, lambda d, name=name: d.find_element(By.LINK_TEXT, name).is_displayed(),
                 f"the nested trial run {name!r} is not shown")
    browser.save_screenshot(str(browser.shots / "sweep-children.png"))


def test_the_parent_runs_artifacts_show_the_report_images(served_sweep, browser):
    from selenium.webdriver.common.by import By

    url, result, _ = served_sweep
    base = url.split("/nnchain")[0]
    browser.get(url)  # the start page chooses the model-training view first
    view(browser, result.experiment_id, "sweep-start")
    for name in REPORT_IMAGES:
        browser.get(f"{base}/#/experiments/{result.experiment_id}/runs/"
                    f"{result.parent_run_id}/artifacts/{name}")
        # the viewer titles the file and shows it decoded from a blob: our PNG's width
        wait_for(browser, lambda d, name=name: d.find_element(
            By.XPATH, f"//*[normalize-space(text())='{name}']"), f"{name} is not opened")
        image = wait_for(browser, lambda d: next(
            (i for i in d.find_elements(By.TAG_NAME, "img")
             if (i.get_attribute("src") or "").startswith("blob:") and i.is_displayed() and
             d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                              i) == 640), None), f"the parent's {name} is not shown")
        assert image.size["height"] > 100
        browser.save_screenshot(str(browser.shots / f"parent-{name}"))
    assert browser.find_elements(By.XPATH, "//*[contains(text(), 'report.html')]")
