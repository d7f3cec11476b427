"""What a researcher sees in JupyterLab, checked in a real browser.

JupyterLab runs on 127.0.0.1 with a token over a smoke-sized work folder; Debian's Chromium (headless) drives it
through selenium with Debian's chromedriver (no browser or driver is downloaded: ``.ci/run`` installs the
``chromium`` and ``chromium-driver`` packages when they are missing). Notebook 03 runs top to bottom, every
slider is moved and the live figure and the label counts must change; notebook 01's plotly figure must render
inline (its SVG is in the page); no cell may show an error. Screenshots of the slider UI before and after a
move go to ``figures/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import nbformat
import pytest
from conftest import free_port

from workbench import config
from workbench.chain import Profile, run_chain

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                                                   "(apt-get install chromium chromium-driver; .ci/run does)")]
SHOTS = config.PROJ_ROOT / "figures"
LAB_SETTINGS = {  # every cell in the DOM (no windowing), no news pop-up over the page
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                          "checkForUpdates": False},
}


_DRIVER: list[Any] = []  # the test's browser, for a screenshot when a wait fails


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 180.0, step: float = 0.3) -> Any:
    """Poll ``fn`` until it returns something truthy; fail the test with ``what`` after ``timeout`` seconds
    (saving ``figures/browser_failure.png`` and the page's HTML beside it, to see why)."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - a stale element while the page redraws: poll again
            out, last = None, exc
        if out:
            return out
        time.sleep(step)
    if _DRIVER:
        SHOTS.mkdir(exist_ok=True)
        _DRIVER[-1].save_screenshot(str(SHOTS / "browser_failure.png"))
        (SHOTS / "browser_failure.html").write_text(_DRIVER[-1].page_source)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last!r})")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab over smoke data: ``(base url, token, notebook folder)``."""
    import papermill

    tmp = tmp_path_factory.mktemp("browser")
    work = tmp / "work"
    res = run_chain("smoke", only=["01", "02", "03"], run_dir=tmp / "run", workdir=work, log=lambda *a: None)
    assert res.ok, res.manifest["notebooks"]
    profile = Profile.load("smoke")
    nbs = tmp / "notebooks"
    nbs.mkdir()
    for name in ("01_ingestion", "03_labeling"):  # the smoke parameters injected, not executed
        src = config.NOTEBOOKS_DIR / f"{name}.ipynb"
        declared = papermill.inspect_notebook(str(src))
        params = {k: v for k, v in {**profile.parameters, **profile.notebooks.get(name[:2], {})}.items()
                  if k in declared}
        papermill.execute_notebook(str(src), str(nbs / src.name), parameters=params, prepare_only=True,
                                   progress_bar=False)
    settings = tmp / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the tests' Agg would hide figures
    env.update({config.WORKDIR_ENV: str(work), "JUPYTERLAB_SETTINGS_DIR": str(settings),
                "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), config.PROGRESS_ENV: "0"})
    log = open(tmp / "jupyterlab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={nbs}"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
            return r.status == 200

    try:
        wait_for("JupyterLab to answer", up, timeout=90)
        yield base, token, nbs
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture()
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    _DRIVER.append(driver)
    yield driver
    _DRIVER.remove(driver)
    driver.quit()


def run_all(driver: Any, base: str, token: str, notebook: str) -> None:
    """Open ``notebook`` in a fresh workspace, wait for the kernel, Run > Run All Cells, wait until every code
    cell has run and the kernel is idle."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/lab/workspaces/{notebook[:2]}/tree/{notebook}?token={token}&reset")
    wait_for("the notebook to open", lambda: driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell"))
    status = lambda: driver.find_element(By.CSS_SELECTOR, "#jp-main-statusbar").text  # noqa: E731
    wait_for("the kernel to start", lambda: "Idle" in status())
    wait_for("the Run menu", lambda: [m for m in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                                      if m.text == "Run"])[0].click()
    wait_for("Run All Cells", lambda: [i for i in driver.find_elements(By.CSS_SELECTOR, ".lm-Menu-item")
                                       if i.text.startswith("Run All Cells")])[0].click()

    def finished() -> bool:
        prompts = [p.text.strip() for p in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt")]
        return bool(prompts) and all(p.startswith("[") and p[1:-2].isdigit() for p in prompts) and "Idle" in status()

    wait_for(f"every cell of {notebook} to run", finished, timeout=600, step=1.0)


def saved_errors(driver: Any, folder: Path, notebook: str) -> list[str]:
    """Save the notebook from the browser (Ctrl+S) and return the error outputs in the saved file."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").click()
    ActionChains(driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
    wait_for("the notebook to be saved",
             lambda: not driver.find_elements(By.CSS_SELECTOR, "#jp-main-dock-panel .lm-TabBar-tab.jp-mod-dirty"))
    nb = nbformat.read(folder / notebook, as_version=4)
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]


def test_notebook_03_sliders_redraw_the_live_figure_and_the_counts(lab, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base, token, folder = lab
    d = browser
    run_all(d, base, token, "03_labeling.ipynb")
    def ui() -> Any:  # looked up each time: JupyterLab may re-render the widget, leaving old elements stale
        (box,) = [b for b in d.find_elements(By.CSS_SELECTOR, ".widget-vbox")
                  if b.find_elements(By.CSS_SELECTOR, ".widget-slider")]
        return box

    def sliders() -> list[Any]:
        return ui().find_elements(By.CSS_SELECTOR, ".widget-slider")

    def image() -> str:
        imgs = ui().find_elements(By.CSS_SELECTOR, ".widget-output img")
        return imgs[0].get_attribute("src") if imgs else ""

    def counts() -> str:
        return ui().find_element(By.CSS_SELECTOR, ".widget-html").text

    wait_for("the slider UI", ui)
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", ui())
    assert [s.find_element(By.CSS_SELECTOR, ".widget-label").text for s in sliders()] == [
        "profit taking ×target", "stop loss ×target", "vertical (bars)", "event"]

    wait_for("the live figure", image)
    assert counts()[0].isdigit() and " events · first touch: " in counts()
    # the figure is shown once: the saved default is closed, so the cell's only image is the live one
    (cell,) = [c for c in d.find_elements(By.CSS_SELECTOR, ".jp-CodeCell") if c.find_elements(By.CSS_SELECTOR,
                                                                                                ".widget-slider")]
    assert len(cell.find_elements(By.CSS_SELECTOR, "img")) == len(cell.find_elements(By.CSS_SELECTOR,
                                                                                     ".widget-output img")) == 1
    SHOTS.mkdir(exist_ok=True)
    d.save_screenshot(str(SHOTS / "browser_03_sliders_before.png"))

    def readout(k: int) -> str:
        return sliders()[k].find_element(By.CSS_SELECTOR, ".widget-readout").text

    def move(k: int, value: str) -> None:  # type into the slider's readout, as a user can, then Enter
        sliders()[k].find_element(By.CSS_SELECTOR, ".widget-readout").click()
        ActionChains(d).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).send_keys(value, Keys.ENTER).perform()

    for k, value, changes_counts in ((0, "2.5", True), (1, "0.4", True), (2, "90", True), (3, "3", False)):
        before_img, before_counts = image(), counts()
        move(k, value)
        wait_for(f"the figure to redraw after '{value}'", lambda: image() and image() != before_img, timeout=60)
        assert float(readout(k)) == float(value)
        if changes_counts:
            wait_for(f"the label counts to change after '{value}'", lambda: counts() != before_counts, timeout=30)
        else:
            assert counts() == before_counts  # another event, the same labels
    before_img = image()
    ui().find_element(By.XPATH, ".//button[contains(., 'next event')]").click()
    wait_for("'next event' to redraw", lambda: image() != before_img, timeout=60)
    assert readout(3) == "4"
    d.save_screenshot(str(SHOTS / "browser_03_sliders_after.png"))
    assert saved_errors(d, folder, "03_labeling.ipynb") == []


def test_notebook_01_renders_plotly_inline(lab, browser):
    from selenium.webdriver.common.by import By

    base, token, folder = lab
    run_all(browser, base, token, "01_ingestion.ipynb")
    svg = wait_for("the plotly figure's SVG", lambda: browser.find_elements(By.CSS_SELECTOR,
                                                                              ".jp-OutputArea-output svg.main-svg"))
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", svg[0])
    browser.save_screenshot(str(SHOTS / "browser_01_plotly.png"))
    assert saved_errors(browser, folder, "01_ingestion.ipynb") == []
