"""The MLflow UI on a large sweep's store (issue 17): how long until its experiment page shows
the sweep's parent run, and its nested trial runs once unfolded, in headless Chromium.

    MLFLOW_DISABLE_TELEMETRY=true .venv/bin/python benchmarks/ui_load.py \\
        --store DIR/nnchain-runs --sweep NAME [--timeout 600]

Starts ``nnchain ui SWEEP`` on the store, follows the address it prints from a fresh browser
profile (as a user does), and prints the seconds until (1) the runs table lists the parent
run, (2) the first of its nested runs shows after unfolding it. Needs the Debian
``chromium`` and ``chromium-driver`` packages and selenium (the test extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    ui = subprocess.Popen([sys.executable, "-m", "nnchain", "ui", args.sweep, "--tracking-uri",
                           args.store, "--port", str(free_port())], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(ui.stdout), daemon=True).start()
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = None
    try:
        while not lines:
            if ui.poll() is not None:
                raise SystemExit(f"nnchain ui exited {ui.returncode}")
            time.sleep(0.1)
        url = lines[0].strip()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        wait = WebDriverWait(browser, args.timeout, poll_frequency=0.2, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException))
        started = time.perf_counter()
        browser.get(url)
        parent = wait.until(lambda d: (link := d.find_element(By.LINK_TEXT, args.sweep))
                            .is_displayed() and link)
        listed = time.perf_counter() - started
        print(f"the parent run {args.sweep!r} listed {listed:.1f} s after opening {url}",
              flush=True)
        wait.until(lambda d: parent.find_element(
            By.XPATH, "./ancestor::*[@role='gridcell'][1]//button")).click()
        clicked = time.perf_counter()
        child = wait.until(lambda d: next(
            (link for link in d.find_elements(By.XPATH, "//a[contains(@href, '/runs/')]")
             if link.is_displayed() and link.text and link.text != args.sweep), None))
        print(f"its nested runs shown {time.perf_counter() - clicked:.1f} s after unfolding "
              f"it (first: {child.text!r}); {time.perf_counter() - started:.1f} s in all",
              flush=True)
    finally:
        if browser is not None:
            browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
        ui.terminate()
        ui.wait(timeout=30)


if __name__ == "__main__":
    main()
