"""The quickstart notebook in a real JupyterLab, driven through Debian's Chromium with Playwright.

Headless notebook tests prove the Python side; this one proves what users meet: the widget front
ends render (no empty boxes, no "Error displaying widget"), the live picture really recolours on the
page while the workflow runs, and the recovery panel's buttons change the stored state on disk.

It starts ``jupyter lab`` (token, free loopback port, temporary root and Jupyter folders, see
``browser_helpers``), opens a copy of ``notebooks/quickstart.ipynb``, runs all cells from the Run
menu, then in the second recovery panel clicks two nodes of the picture (and checks the list
selects them), previews *reset all failed* and cancels it, previews and confirms *reset* of the
clicked nodes (checking the file on disk), clicks *run again*, and finally chooses a node in the list
(checking the picture highlights it).
Screenshots of every step go to ``test-output/browser/``. A failure names the step and carries the
page's console errors and the tail of the server log. Needs ``/usr/bin/chromium`` (``./dev setup``).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from flow_workbench.dot import STATUS_STYLES
from flow_workbench.status import NodeStatus
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DARK_THEME,
    JupyterLab,
    launch_chromium,
    page_errors,
)

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
SHOTS = REPO / "test-output" / "browser"

pytestmark = pytest.mark.e2e  # starts JupyterLab and Chromium: `pytest -m "not e2e"` skips it

#: The quickstart's DAG, and what its first run ends with (churn_model's API is down).
NODES = {
    "extract_orders",
    "extract_customers",
    "clean_orders",
    "join",
    "revenue_report",
    "churn_model",
    "publish",
}
FAILED, SKIPPED = "churn_model", "publish"
PANEL_WORKFLOW = "etl-demo-2"  # the workflow of the panel the test clicks in (section 5)

#: Text in the input of the cells whose outputs the test watches.
CELL_MARKERS = {"live": "run_live(wf)", "panel2": "panel2 = RecoveryPanel"}

STEP_TIMEOUT_MS = 60_000  # one step: a cell's run, a button's effect
RUN_ALL_TIMEOUT_MS = 180_000  # the whole notebook, kernel start included


def fill(status: NodeStatus) -> str:
    return STATUS_STYLES[status].fill.lower()


# Installed into the page before the run: a MutationObserver recording every (node, status, fill)
# change of every workbench picture (.fw-picture), per watched cell, so short-lived states such as
# "running" are seen even between two polls; plus helpers reading a cell's current picture.
WATCHER_JS = """
(markers) => {
  const XLINK = "http://www.w3.org/1999/xlink";
  const fw = { markers, log: [], last: {} };
  fw.cellKey = (el) => {
    const cell = el.closest(".jp-CodeCell");
    if (!cell) return null;
    const input = cell.querySelector(".jp-InputArea-editor");
    const source = input ? input.textContent : "";
    for (const [key, marker] of Object.entries(fw.markers)) if (source.includes(marker)) return key;
    return null;
  };
  fw.nodes = (picture) => {
    const out = {};
    for (const g of picture.querySelectorAll('g.node[id^="node-"]')) {
      const link = g.querySelector("a");
      const title = link ? link.getAttributeNS(XLINK, "title") || link.getAttribute("xlink:title") || "" : "";
      const name = title.split("\\n")[0];
      const statusClass = [...g.classList].find((c) => c.startsWith("status-"));
      const shapes = g.querySelectorAll("path, polygon, ellipse");
      const text = [...g.querySelectorAll("text")].map((t) => t.textContent).join(" ");
      out[name] = {
        status: statusClass ? statusClass.slice(7) : null,
        fill: shapes.length ? (shapes[0].getAttribute("fill") || "").toLowerCase() : null,
        dash: shapes.length ? shapes[0].getAttribute("stroke-dasharray") : null,
        shapes: shapes.length,
        text,
        title,
      };
    }
    return out;
  };
  fw.pictures = (key) => [...document.querySelectorAll(".fw-picture")].filter(
    (p) => fw.cellKey(p) === key && p.querySelector("svg"));
  fw.current = (key) => {
    const pictures = fw.pictures(key);
    return pictures.length ? fw.nodes(pictures[pictures.length - 1]) : null;
  };
  fw.scan = () => {
    for (const picture of document.querySelectorAll(".fw-picture")) {
      const key = fw.cellKey(picture);
      if (key === null) continue;
      for (const [name, node] of Object.entries(fw.nodes(picture))) {
        const id = key + "/" + name;
        const state = node.status + " " + node.fill;
        if (fw.last[id] !== state) {
          fw.last[id] = state;
          fw.log.push({ key, name, status: node.status, fill: node.fill, at: performance.now() });
        }
      }
    }
  };
  fw.observer = new MutationObserver(() => fw.scan());
  fw.observer.observe(document.body, { subtree: true, childList: true, characterData: true,
                                       attributes: true, attributeFilter: ["class", "fill"] });
  window.__fw = fw;
  fw.scan();
}
"""


def open_notebook(page: Any, lab: JupyterLab, name: str) -> None:
    """Open ``name`` and wait until its kernel is connected and idle (before that the toolbar says
    idle with "No Kernel", and a Run All then silently runs nothing)."""
    page.goto(lab.url(f"lab/tree/{name}"), timeout=STEP_TIMEOUT_MS)
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=STEP_TIMEOUT_MS)
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(
               (item) => /^(?!No Kernel).+ \\| Idle$/.test(item.textContent.trim()))""",
        timeout=RUN_ALL_TIMEOUT_MS,
    )


def run_all_cells(page: Any) -> None:
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def wait_for_every_cell(page: Any) -> None:
    """Wait until every code cell has an execution count and the kernel is idle."""
    page.wait_for_function(
        """() => {
             const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
             const busy = document.querySelector('.jp-Notebook-ExecutionIndicator');
             return prompts.length > 0 && prompts.every((p) => /\\[\\d+\\]/.test(p.textContent))
               && busy && busy.dataset.status === 'idle';
           }""",
        timeout=RUN_ALL_TIMEOUT_MS,
    )


class StepFailed(Exception):
    """A step of the scenario failed; ``retryable`` for browser/server trouble, not wrong results."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Scenario:
    """One attempt: a fresh server, browser profile and working folder."""

    def __init__(self, work: Path, attempt: int) -> None:
        self.work = work
        self.attempt = attempt
        self.root = work / "root"
        self.lab = JupyterLab(self.root, work / "jupyter-home", work / "jupyterlab.log")
        self.console: list[str] = []
        self.page: Any = None
        self.focus: Any = None  # the element a failure screenshot shows
        self.step = "start"
        self.timings: dict[str, float] = {}
        self._started = self._step_started = time.monotonic()
        self._shot = 0

    # --- plumbing --------------------------------------------------------------------------------

    def begin(self, step: str) -> None:
        """Start the next step; the finished one's duration goes to ``timings`` (seconds)."""
        now = time.monotonic()
        self.timings[self.step] = round(now - self._step_started, 2)
        self.step, self._step_started = step, now

    def screenshot(self, name: str, element: Any = None) -> None:
        if self.page is None:
            return
        self._shot += 1
        path = SHOTS / f"attempt{self.attempt}-{self._shot:02d}-{name}.png"
        try:
            if element is not None:  # the element at the top of the viewport, with its surroundings
                element.first.evaluate("(el) => el.scrollIntoView({block: 'start'})")
            self.page.screenshot(path=str(path), timeout=15_000)
        except Exception as error:  # a screenshot must never hide the real failure
            self.console.append(f"(screenshot {name} failed: {error})")

    def report(self, error: BaseException) -> str:
        errors = [line for line in self.console if not line.startswith(("log:", "debug:", "info:"))]
        shown = "\n".join(errors[-40:]) or "(none)"
        return (
            f"browser scenario failed at step {self.step!r} (attempt {self.attempt}): "
            f"{type(error).__name__}: {error}\n\n"
            f"--- page console errors/warnings ---\n{shown}\n\n"
            f"--- JupyterLab server log (tail of {self.lab.log_path}) ---\n{self.lab.log_tail()}\n\n"
            f"screenshots: {SHOTS}"
        )

    def wait_for(self, js: str, arg: Any = None, timeout: int = STEP_TIMEOUT_MS) -> Any:
        return self.page.wait_for_function(js, arg=arg, timeout=timeout).json_value()

    def current(self, key: str) -> dict[str, dict[str, Any]] | None:
        nodes: dict[str, dict[str, Any]] | None = self.page.evaluate("(key) => window.__fw.current(key)", key)
        return nodes

    def log(self, key: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.page.evaluate(
            "(key) => window.__fw.log.filter((e) => e.key === key)", key
        )
        return entries

    def wait_for_statuses(self, key: str, expected: dict[str, str], timeout: int = STEP_TIMEOUT_MS) -> None:
        """Wait until the cell's picture shows every node of ``expected`` in that status and fill."""
        wanted = {name: [status, fill(NodeStatus(status))] for name, status in expected.items()}
        self.wait_for(
            """([key, wanted]) => {
                 const nodes = window.__fw.current(key);
                 if (!nodes) return false;
                 return Object.entries(wanted).every(([name, [status, fill]]) =>
                   nodes[name] && nodes[name].status === status && nodes[name].fill === fill);
               }""",
            [key, wanted],
            timeout,
        )

    # --- the scenario --------------------------------------------------------------------------

    def run(self, playwright: Any) -> None:
        shutil.copytree(NOTEBOOKS, self.root)
        self.begin("start JupyterLab")
        self.lab.start()
        self.begin("launch Chromium")
        context = playwright.chromium.launch_persistent_context(
            str(self.work / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1200},
        )
        try:
            page = self.page = context.pages[0] if context.pages else context.new_page()
            page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))
            try:
                self.scenario(page)
            except BaseException:
                self.screenshot("failure", self.focus)
                raise
        finally:
            self.page = None
            context.close()

    def scenario(self, page: Any) -> None:
        self.begin("open the quickstart notebook")
        open_notebook(page, self.lab, "quickstart.ipynb")
        page.evaluate(WATCHER_JS, CELL_MARKERS)
        self.screenshot("opened")

        self.begin("Run > Run All Cells")
        run_all_cells(page)

        self.begin("live picture shows a running node")
        self.wait_for("() => window.__fw.log.some((e) => e.key === 'live' && e.status === 'running')")
        self.screenshot("live-running", page.locator(".jp-CodeCell", has_text=CELL_MARKERS["live"]))

        self.begin("live picture ends with the failure")
        final = {name: "completed" for name in NODES} | {FAILED: "failed", SKIPPED: "skipped"}
        self.wait_for_statuses("live", final, timeout=RUN_ALL_TIMEOUT_MS)
        live_cell = self.focus = page.locator(".jp-CodeCell", has_text=CELL_MARKERS["live"])
        self.screenshot("live-final", live_cell)
        self.check_live_picture(live_cell)

        self.begin("every cell ran")
        wait_for_every_cell(page)
        stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert stderr.count() == 0, f"a cell failed or warned: {stderr.first.inner_text()[:2000]}"
        self.screenshot("all-cells-ran")

        self.begin("recovery panel renders")
        cell = self.focus = page.locator(".jp-CodeCell", has_text=CELL_MARKERS["panel2"])
        cell.first.evaluate("(el) => el.scrollIntoView({block: 'start'})")
        panel = cell.locator(".fw-recovery-panel")
        # Fail fast, and say why, when the widget front end is missing or broken.
        shown = self.wait_for(
            """(cell) => {
                 const outputs = cell.querySelector('.jp-OutputArea');
                 const text = outputs ? outputs.textContent : '';
                 if (cell.querySelector('.fw-recovery-panel')) return 'panel';
                 if (text.includes('Error displaying widget')) return text;
                 if (text.includes('<RecoveryPanel')) return text;
                 return false;
               }""",
            cell.element_handle(),
        )
        assert shown == "panel", (
            "the recovery panel did not render as a widget (is the jupyterlab_widgets front end "
            f"installed?); the cell shows: {shown[:500]}"
        )
        panel.wait_for(state="visible", timeout=STEP_TIMEOUT_MS)
        body = page.evaluate("() => document.body.textContent")  # off-screen cells too
        assert "Error displaying widget" not in body, "a widget failed to render in the front end"
        box = panel.bounding_box()
        assert box is not None and box["height"] > 150 and box["width"] > 300, f"panel is an empty box: {box}"
        for selector in (".fw-action-reset_failed", ".fw-confirm", ".fw-cancel", ".fw-run"):
            assert panel.locator(selector).is_visible(), f"the panel lacks its {selector} button"
        cut = panel.locator("button").evaluate_all(
            "(buttons) => buttons.filter((b) => b.scrollWidth > b.clientWidth + 1).map((b) => b.textContent)"
        )
        assert cut == [], f"button labels cut off: {cut}"
        self.wait_for_statuses("panel2", {FAILED: "failed", SKIPPED: "skipped"})
        self.wait_for(
            "(el) => el.textContent.includes('The run ended with failed node(s)')",
            panel.locator(".fw-message").element_handle(),
        )
        assert self.seen_running_then_completed("panel2"), (
            f"the panel's picture did not follow its run: {self.log('panel2')}"
        )
        self.screenshot("panel-failed", cell)
        assert self.stored_statuses()[FAILED] == "failed"

        self.begin("click nodes in the picture")
        picture = panel.locator(".fw-picture.fw-graph-select")
        assert picture.count() == 1, "the panel's picture is not the clickable graph widget"
        self.click_node(picture, "join")
        self.click_node(picture, FAILED)
        self.click_node(picture, SKIPPED)
        self.click_node(picture, "join")  # a second click deselects
        self.wait_for_selection(panel, [FAILED, SKIPPED])
        self.screenshot("nodes-clicked", cell)
        picture.evaluate("(el) => { el.style.filter = 'grayscale(1)'; }")  # the halo reads without colour
        self.screenshot("nodes-clicked-greyscale", cell)
        picture.evaluate("(el) => { el.style.filter = ''; }")

        self.begin("click reset all failed (preview), then cancel")
        panel.locator(".fw-action-reset_failed").click()
        message = panel.locator(".fw-message")
        self.wait_for(
            "(el) => el.textContent.includes('Preview of') && el.textContent.includes('churn_model')"
            " && el.textContent.includes('publish')",
            message.element_handle(),
        )
        confirm = panel.locator(".fw-confirm")
        self.wait_for("(el) => !el.disabled", confirm.element_handle())
        self.screenshot("preview", cell)
        stored = self.stored_statuses()
        assert (stored[FAILED], stored[SKIPPED]) == ("failed", "skipped"), f"preview changed it: {stored}"
        panel.locator(".fw-cancel").click()
        self.wait_for("(el) => el.textContent.includes('Cancelled')", message.element_handle())

        self.begin("click reset (preview of the clicked nodes)")
        panel.locator(".fw-action-reset").click()
        self.wait_for(
            """([el, names]) => el.textContent.includes('Preview of “reset”')
                 && el.textContent.includes('2 node(s)') && names.every((n) => el.textContent.includes(n))""",
            [message.element_handle(), [FAILED, SKIPPED]],
        )
        self.wait_for("(el) => !el.disabled", confirm.element_handle())
        self.screenshot("preview-clicked-nodes", cell)
        stored = self.stored_statuses()
        assert (stored[FAILED], stored[SKIPPED]) == ("failed", "skipped"), f"preview changed it: {stored}"

        self.begin("click confirm")
        confirm.click()
        self.wait_for_statuses("panel2", {FAILED: "pending", SKIPPED: "pending"})
        self.wait_for("(el) => el.textContent.includes('Done: 2 node(s) reset to')", message.element_handle())
        self.wait_for_selection(panel, [FAILED, SKIPPED])  # the redrawn picture keeps the selection
        self.screenshot("reset-confirmed", cell)
        stored = self.stored_statuses()
        assert (stored[FAILED], stored[SKIPPED]) == ("pending", "pending"), f"the stored file says {stored}"
        assert all(stored[name] == "completed" for name in NODES - {FAILED, SKIPPED}), stored

        self.begin("click run again")
        before = len(self.log("panel2"))
        panel.locator(".fw-run").click()
        self.wait_for_statuses("panel2", {name: "completed" for name in NODES})
        self.wait_for("(el) => el.textContent.includes('Run finished')", message.element_handle())
        self.screenshot("run-again-completed", cell)
        after = self.log("panel2")[before:]
        assert any(e["name"] in (FAILED, SKIPPED) and e["status"] == "running" for e in after), (
            f"run again: no node was seen running on the page: {after}"
        )
        stored = self.stored_statuses()
        assert set(stored.values()) == {"completed"}, f"after run again the stored file says {stored}"

        self.begin("choose a node in the list: the picture follows")
        options = panel.locator("select[multiple] option")
        # ipywidgets writes the labels' spaces as no-break spaces: take the label from the page
        label = next(text for text in options.all_text_contents() if text.split()[1] == "extract_orders")
        panel.locator("select[multiple]").select_option(label=label)
        self.wait_for_selection(panel, ["extract_orders"])
        self.screenshot("list-selection", cell)

        self.begin("no uncaught errors in the page")
        uncaught = [line for line in self.console if line.startswith("pageerror:")]
        assert uncaught == [], f"uncaught errors in the page: {uncaught}"
        self.begin("done")

    def click_node(self, picture: Any, name: str) -> None:
        """Click a node of a clickable picture, as a user would (at the middle of its box)."""
        node = picture.locator(f'g.fw-selectable[data-fw-node="{name}"]')
        assert node.count() == 1, f"no clickable node {name!r} in the picture"
        node.click()

    def wait_for_selection(self, panel: Any, names: list[str]) -> None:
        """Wait until the picture highlights exactly ``names`` and the list has them selected."""
        js = """(panel) => {
                  const picture = panel.querySelector(".fw-graph-select");
                  const select = panel.querySelector("select[multiple]");
                  return {
                    marked: [...picture.querySelectorAll("g.fw-selected")].map((g) => g.dataset.fwNode),
                    halos: [...picture.querySelectorAll(".fw-halos > .fw-halo")].map((h) => h.dataset.fwNode),
                    listed: [...select.selectedOptions].map((o) => o.textContent.split(/\\s+/)[1]),
                  };
                }"""
        want = sorted(names)
        try:
            self.wait_for(
                f"""([panel, want]) => Object.values(({js})(panel)).every(
                      (got) => JSON.stringify([...got].sort()) === JSON.stringify(want))""",
                [panel.element_handle(), want],
            )
        except Exception as error:
            shown = panel.evaluate(js)
            raise AssertionError(f"the selection should be {want}; the page shows {shown}") from error

    # --- checks --------------------------------------------------------------------------------

    def check_live_picture(self, live_cell: Any) -> None:
        nodes = self.current("live")
        assert nodes is not None, "no live picture on the page"
        assert set(nodes) == NODES, f"the picture's nodes: {sorted(nodes)}"
        assert all(node["shapes"] == 1 for node in nodes.values()), f"shapes per node: {nodes}"
        svg = live_cell.locator(".jp-OutputArea-output .fw-live svg")
        assert svg.count() == 1, "the live picture is not one inline <svg>"
        assert live_cell.locator(".jp-OutputArea-output img").count() == 0, "the picture is an <img> again"
        # the second, greyscale-safe cue of skipped: dotted border and the ⊘ glyph
        skipped = nodes[SKIPPED]
        assert skipped["dash"] == STATUS_STYLES[NodeStatus.SKIPPED].dash_array, skipped
        assert STATUS_STYLES[NodeStatus.SKIPPED].glyph in skipped["text"], skipped
        assert STATUS_STYLES[NodeStatus.FAILED].glyph in nodes[FAILED]["text"], nodes[FAILED]
        # the hover text is in the page (an <img> would have dropped it)
        assert "attempts: 2" in nodes[FAILED]["title"] and "HTTP 503" in nodes[FAILED]["title"], nodes[FAILED]
        assert self.seen_running_then_completed("live"), f"no running-then-completed node: {self.log('live')}"

    def seen_running_then_completed(self, key: str) -> bool:
        """Whether some node was drawn running (its colour) and later completed, in that cell."""
        entries = self.log(key)
        running, completed = fill(NodeStatus.RUNNING), fill(NodeStatus.COMPLETED)
        started: dict[str, int] = {}
        for index, entry in enumerate(entries):
            if entry["status"] == "running" and entry["fill"] == running:
                started.setdefault(entry["name"], index)
            elif entry["status"] == "completed" and entry["fill"] == completed and entry["name"] in started:
                return True
        return False

    def stored_statuses(self) -> dict[str, str]:
        store = FlatBuffersStore(self.root / "workbench-data" / "quickstart")
        try:
            statuses = store.load(PANEL_WORKFLOW).node_statuses()
        finally:
            store.close()
        return {name: status.value for name, status in statuses.items()}


def _require_browser() -> Any:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: run ./dev setup (it installs Debian's chromium), "
            "or apt-get install -y chromium"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run ./dev setup (it installs the dev extra)")
    return sync_playwright


@pytest.mark.timeout(600)
def test_quickstart_in_jupyterlab(tmp_path: Path) -> None:
    sync_playwright = _require_browser()
    from playwright.sync_api import Error as PlaywrightError

    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    failures: list[str] = []
    for attempt in (1, 2):  # at most one retry, and only for browser/server trouble
        scenario = Scenario(tmp_path / f"attempt-{attempt}", attempt)
        try:
            with sync_playwright() as playwright:
                try:
                    scenario.run(playwright)
                except Exception as error:
                    retryable = isinstance(error, PlaywrightError | RuntimeError)
                    raise StepFailed(scenario.report(error), retryable) from error
        except StepFailed as failure:
            failures.append(str(failure))
            if not failure.retryable or attempt == 2:
                pytest.fail("\n\n=== next attempt ===\n\n".join(failures), pytrace=False)
            warnings.warn(f"browser scenario retried after: {str(failure)[:500]}", stacklevel=1)
            continue
        finally:
            scenario.lab.stop()
            scenario.begin("stopped")
            (SHOTS / f"attempt{attempt}-console.log").write_text("\n".join(scenario.console) + "\n")
            scenario.timings["total"] = round(time.monotonic() - scenario._started, 2)
            (SHOTS / f"attempt{attempt}-timings.json").write_text(json.dumps(scenario.timings, indent=1))
        break


# --- a received folder of hostile state files ----------------------------------------------------

HOSTILE_SHOTS = REPO / "test-output" / "browser-hostile"
HOSTILE_CELLS = [
    "from flow_workbench.notebook import StoreBrowser, Timeline, style_nodes, style_workflows\n"
    "from flow_workbench.notebook import nodes_frame, workflows_frame\n"
    "browser = StoreBrowser(FOLDER)\n"
    "browser",
    # every row in detail: each one replaces the picture, tables and message on the page
    "for row in range(len(browser.frame)):\n"
    "    browser.show(row)\n"
    "    if browser.panel is not None:\n"
    "        browser.panel.preview('reset_failed')\n"
    "browser.select('hostile-json')\n"
    "browser.panel.preview('reset_failed')",
    "style_workflows(workflows_frame(FOLDER))",
    "style_nodes(nodes_frame(FOLDER + '/hostile-json.json'))",
    "Timeline(browser.panel.data)",
    "print('all hostile surfaces shown')",
]


def hostile_notebook(folder_name: str) -> dict[str, Any]:
    cells = [f"FOLDER = {folder_name!r}\n" + HOSTILE_CELLS[0], *HOSTILE_CELLS[1:]]
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
            for source in cells
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.mark.timeout(600)
def test_store_browser_on_a_hostile_folder_runs_no_script(tmp_path: Path) -> None:
    """StoreBrowser (and the tables, panel and timeline) on a received folder whose names, errors,
    keys, outputs and paths are markup: no dialog opens, window.__pwned stays unset, no file is
    written through the Jupyter contents API, and the page logs no error (a broken <img> would)."""
    from tests.helpers.markup import FOLDER_PAYLOAD, PAYLOADS, write_hostile_folder

    sync_playwright = _require_browser()
    if HOSTILE_SHOTS.exists():
        shutil.rmtree(HOSTILE_SHOTS)
    HOSTILE_SHOTS.mkdir(parents=True)
    root = tmp_path / "root"
    write_hostile_folder(root)
    (root / "hostile.ipynb").write_text(json.dumps(hostile_notebook(FOLDER_PAYLOAD)), encoding="utf-8")
    lab = JupyterLab(root, tmp_path / "jupyter-home", tmp_path / "jupyterlab.log")
    dialogs: list[str] = []
    console: list[str] = []
    try:
        lab.start()
        with sync_playwright() as playwright:
            context, page = launch_chromium(playwright, tmp_path / "chromium-profile", console, 1600)

            def dismiss(dialog: Any) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            try:
                page.on("dialog", dismiss)
                open_notebook(page, lab, "hostile.ipynb")
                run_all_cells(page)
                page.get_by_text("all hostile surfaces shown").wait_for(timeout=RUN_ALL_TIMEOUT_MS)
                wait_for_every_cell(page)
                page.wait_for_timeout(2_000)  # a failed image load reports after the output settles
                body = page.evaluate("() => document.body.textContent")
                pwned = page.evaluate("() => [window.__pwned, window.parent.__pwned]")
                page.screenshot(path=str(HOSTILE_SHOTS / "store-browser.png"), full_page=True)
                cell = page.locator(".jp-CodeCell").first
                cell.evaluate("(el) => el.scrollIntoView({block: 'start'})")
                page.screenshot(path=str(HOSTILE_SHOTS / "store-browser-table.png"))
            finally:
                context.close()
    finally:
        lab.stop()
        (HOSTILE_SHOTS / "console.log").write_text("\n".join(console) + "\n")
    assert dialogs == [], f"a payload opened dialogs: {dialogs}"
    assert pwned == [None, None], "a payload ran script in the page"
    assert not (root / "pwned.txt").exists(), "a payload wrote a file through the Jupyter REST API"
    errors = page_errors(console)
    assert errors == [], f"the page logged errors: {errors}\n--- server log ---\n{lab.log_tail()}"
    assert "Error displaying widget" not in body
    assert "7 workflow file(s)" in body  # the browser rendered its table ...
    assert PAYLOADS[0] in body and PAYLOADS[1] in body  # ... and the payloads show as text


# --- committed notebooks as a fresh clone opens them: untrusted, never run ------------------------

UNTRUSTED_SHOTS = REPO / "test-output" / "browser-untrusted"

# Every output of the open notebook: what it is rendered as, whether it shows markup as text, and
# each image with its loaded size. Pictures are scrolled into view first (JupyterLab may defer
# rendering of cells outside the viewport).
OUTPUTS_JS = """
() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output')]
  .map((output) => ({
    mime: output.dataset.mimeType || '',
    text: output.textContent.slice(0, 300),
    markupAsText: /<svg|<\\?xml|<style|<table/.test(output.textContent),
    pictures: output.querySelectorAll('.fw-picture').length,
    images: [...output.querySelectorAll('img')].map((img) => ({
      loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth,
      svg: img.src.startsWith('data:image/svg+xml')})),
    coloured: [...output.querySelectorAll('td')].filter(
      (td) => getComputedStyle(td).backgroundColor !== 'rgba(0, 0, 0, 0)').length,
  }))
"""


def committed_pictures(path: Path) -> int:
    """How many outputs of the committed notebook hold a picture (a static ``<img>``)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return sum(
        1
        for cell in notebook["cells"]
        for output in cell.get("outputs", [])
        if "data:image/svg+xml;base64," in "".join(output.get("data", {}).get("text/html", ""))
    )


@pytest.mark.timeout(600)
def test_committed_notebooks_render_untrusted(tmp_path: Path) -> None:
    """Each committed notebook opened in JupyterLab without running it (as on Binder or after a
    clone: untrusted, so HTML is sanitised and widgets have no state): every picture is a loaded
    image, no output shows markup as text, no widget fails, the status tables keep their colours."""
    sync_playwright = _require_browser()
    if UNTRUSTED_SHOTS.exists():
        shutil.rmtree(UNTRUSTED_SHOTS)
    UNTRUSTED_SHOTS.mkdir(parents=True)
    root = tmp_path / "root"
    shutil.copytree(NOTEBOOKS, root)
    lab = JupyterLab(root, tmp_path / "jupyter-home", tmp_path / "jupyterlab.log")
    console: list[str] = []
    found: dict[str, list[dict[str, Any]]] = {}
    bodies: dict[str, str] = {}
    try:
        lab.start()
        with sync_playwright() as playwright:
            context, page = launch_chromium(playwright, tmp_path / "chromium-profile", console, 1100)
            try:
                for path in sorted(NOTEBOOKS.glob("*.ipynb")):
                    # ?reset: a fresh workspace, so this notebook is the only one open
                    url = f"{lab.base_url}/lab/tree/{path.name}?reset&token={lab.token}"
                    page.goto(url, timeout=STEP_TIMEOUT_MS)
                    outputs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output")
                    outputs.first.wait_for(timeout=STEP_TIMEOUT_MS)
                    selector = ".jp-NotebookPanel:not(.lm-mod-hidden) .fw-picture img"
                    page.wait_for_function(
                        "([selector, count]) => document.querySelectorAll(selector).length >= count",
                        arg=[selector, committed_pictures(path)],
                        timeout=STEP_TIMEOUT_MS,
                    )
                    for index, picture in enumerate(page.query_selector_all(selector)):
                        picture.evaluate("(img) => img.scrollIntoView({block: 'start'})")
                        page.wait_for_function(
                            "(img) => img.complete && img.naturalWidth > 0",
                            arg=picture,
                            timeout=STEP_TIMEOUT_MS,
                        )
                        if index < 4:
                            page.screenshot(path=str(UNTRUSTED_SHOTS / f"{path.stem}-{index + 1:02d}.png"))
                    found[path.name] = page.evaluate(OUTPUTS_JS)
                    bodies[path.name] = page.evaluate("() => document.body.textContent")
            finally:
                context.close()
    finally:
        lab.stop()
        (UNTRUSTED_SHOTS / "console.log").write_text("\n".join(console) + "\n")
    assert set(found) == {path.name for path in NOTEBOOKS.glob("*.ipynb")}
    for name, outputs in found.items():
        assert "Error displaying widget" not in bodies[name], name
        as_text = [output["text"] for output in outputs if output["markupAsText"]]
        assert as_text == [], f"{name}: outputs show markup as text: {as_text}"
        images = [image for output in outputs for image in output["images"]]
        assert all(image["loaded"] and image["svg"] for image in images), f"{name}: {images}"
        expected = committed_pictures(NOTEBOOKS / name)
        assert len(images) == expected, f"{name}: {len(images)} pictures on the page, {expected} committed"
        assert all(output["mime"] != "image/svg+xml" for output in outputs), name
    assert committed_pictures(NOTEBOOKS / "quickstart.ipynb") >= 4  # live, timeline, panels, browser
    # the styled status tables keep their colours (inline styles survive the sanitiser)
    assert any(output["coloured"] for output in found["quickstart.ipynb"]), found["quickstart.ipynb"]


# --- a 1,000-node workflow in the recovery panel: counts, zoom, search, filter, details ----------

BIG_SHOTS = REPO / "test-output" / "browser-big"
BIG_FAILED = "task_00517"
BIG_CELLS = [
    "import random\n"
    "from flow_workbench import DAG, InMemoryStore, Workflow, WorkflowExecutionError\n"
    "from flow_workbench.notebook import RecoveryPanel\n"
    "rnd = random.Random(7)\n"
    "dag = DAG('big')\n"
    "names = [f'task_{i:05d}' for i in range(1000)]\n"
    "def work(data):\n"
    "    return 1\n"
    "def fail(data):\n"
    "    raise RuntimeError('disk full on worker 7: ' + 'x' * 600)\n"
    "for i, name in enumerate(names):\n"
    "    level = i // 40\n"
    "    deps = rnd.sample(names[(level - 1) * 40 : level * 40], 2) if level else []\n"
    f"    dag.add_node(name, fail if name == {BIG_FAILED!r} else work, depends_on=deps)\n"
    "store = InMemoryStore()\n"
    "try:\n"
    "    Workflow(dag, 'big', store).execute()\n"
    "except WorkflowExecutionError as error:\n"
    "    print('failed:', error.failed_nodes)",
    "panel = RecoveryPanel(store, 'big', dag=dag)\npanel",
]


@pytest.mark.timeout(600)
def test_a_thousand_node_workflow_is_explorable(tmp_path: Path) -> None:
    """The panel's picture of 1,000 nodes: status counts above it, the failed node on screen at
    first, fit and 100% and ctrl+wheel zoom, search centres on a node, a status chip dims the
    others, and clicking a node opens its detail pane with the whole error."""
    sync_playwright = _require_browser()
    if BIG_SHOTS.exists():
        shutil.rmtree(BIG_SHOTS)
    BIG_SHOTS.mkdir(parents=True)
    root = tmp_path / "root"
    root.mkdir()
    notebook = hostile_notebook("unused")  # the same notebook skeleton
    notebook["cells"] = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
        for source in BIG_CELLS
    ]
    (root / "big.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    lab = JupyterLab(root, tmp_path / "jupyter-home", tmp_path / "jupyterlab.log")
    console: list[str] = []
    step = "start"

    def shot(name: str) -> None:
        page.screenshot(path=str(BIG_SHOTS / f"{len(list(BIG_SHOTS.glob('*.png'))) + 1:02d}-{name}.png"))

    try:
        lab.start()
        with sync_playwright() as playwright:
            context, page = launch_chromium(playwright, tmp_path / "chromium-profile", console, 1100)
            try:
                step = "open and run"
                open_notebook(page, lab, "big.ipynb")
                run_all_cells(page)
                wait_for_every_cell(page)
                picture = page.locator(".fw-recovery-panel .fw-graph-select")
                picture.wait_for(timeout=RUN_ALL_TIMEOUT_MS)
                picture.evaluate("(el) => el.scrollIntoView({block: 'start'})")
                viewport = picture.locator(".fw-viewport")
                page.wait_for_function(
                    "(el) => el.querySelectorAll('g.fw-selectable').length === 1000",
                    arg=viewport.element_handle(),
                )
                shot("first-view")

                step = "status counts above the picture"
                chips = {
                    chip.get_attribute("data-fw-status"): chip.inner_text()
                    for chip in picture.locator(".fw-chip").all()
                }
                # the run stops after the failing level: the rest stays pending
                assert set(chips) == {"completed", "failed", "pending"}, chips
                assert chips["failed"].endswith("failed 1"), chips
                assert sum(int(text.split()[-1]) for text in chips.values()) == 1000, chips
                assert picture.locator(".fw-total").inner_text() == "1000 nodes:"

                step = "the failed node is on screen at first, at a readable size"
                failed = picture.locator(f'g.fw-selectable[data-fw-node="{BIG_FAILED}"]')
                assert inside(failed.bounding_box(), viewport.bounding_box()), "the failed node is off-screen"
                assert picture.locator(".fw-zoom-label").inner_text() == "100%"

                step = "fit, then ctrl+wheel zoom, then 100%"
                picture.locator(".fw-fit").click()
                fitted = percent(picture)
                assert fitted < 100, fitted
                box = viewport.bounding_box()
                assert box is not None
                svg_box = picture.locator("svg").bounding_box()
                assert svg_box is not None and svg_box["width"] <= box["width"] + 1, (svg_box, box)
                shot("fit")
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.keyboard.down("Control")
                page.mouse.wheel(0, -300)
                page.keyboard.up("Control")
                page.wait_for_function(
                    "([el, before]) => parseInt(el.textContent) > before",
                    arg=[picture.locator(".fw-zoom-label").element_handle(), fitted],
                )
                shot("wheel-zoomed")
                picture.locator(".fw-actual").click()
                assert percent(picture) == 100

                step = "search centres on a node"
                picture.locator(".fw-search").fill("task_00042")
                target = picture.locator('g.fw-selectable[data-fw-node="task_00042"]')
                page.wait_for_function(
                    "(el) => el.classList.contains('fw-current-match')", arg=target.element_handle()
                )
                assert picture.locator(".fw-match-count").inner_text() == "1 match"
                assert inside(target.bounding_box(), viewport.bounding_box()), (
                    "search did not bring the node into view"
                )
                shot("search")
                picture.locator(".fw-search").fill("")

                step = "a status chip shows only those nodes"
                picture.locator('.fw-chip[data-fw-status="failed"]').click()
                dimmed = picture.locator("g.fw-dimmed").count()
                assert dimmed == 999, dimmed
                assert "fw-dimmed" not in (failed.get_attribute("class") or "")
                shot("filter-failed")
                picture.locator('.fw-chip[data-fw-status="failed"]').click()
                assert picture.locator("g.fw-dimmed").count() == 0

                step = "clicking a node opens its details"
                picture.locator(".fw-actual").click()
                picture.locator(".fw-search").fill(BIG_FAILED)
                page.wait_for_function(
                    "(el) => el.classList.contains('fw-current-match')", arg=failed.element_handle()
                )
                failed.click()
                details = page.locator(".fw-recovery-panel .fw-details")
                details.locator(".fw-error").wait_for(timeout=STEP_TIMEOUT_MS)
                error_text = details.locator(".fw-error").inner_text()
                assert error_text == "RuntimeError: disk full on worker 7: " + "x" * 600, error_text[:100]
                assert "downstream" in details.inner_text()
                details.evaluate("(el) => el.scrollIntoView({block: 'center'})")
                shot("details")
                uncaught = [line for line in console if line.startswith("pageerror:")]
                assert uncaught == [], uncaught
            except BaseException:
                page.screenshot(path=str(BIG_SHOTS / "failure.png"))
                raise
            finally:
                context.close()
    except Exception as error:
        raise AssertionError(
            f"step {step!r}: {error}\n--- console ---\n" + "\n".join(console[-30:])
        ) from error
    finally:
        lab.stop()
        (BIG_SHOTS / "console.log").write_text("\n".join(console) + "\n")


def inside(box: dict[str, float] | None, frame: dict[str, float] | None) -> bool:
    """Whether the middle of ``box`` lies inside ``frame`` (both page rectangles)."""
    if box is None or frame is None:
        return False
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    return frame["x"] <= x <= frame["x"] + frame["width"] and frame["y"] <= y <= frame["y"] + frame["height"]


def percent(picture: Any) -> int:
    return int(picture.locator(".fw-zoom-label").inner_text().rstrip("%"))


# --- contrast of the workbench's text in the light and the dark theme ----------------------------

CONTRAST_SHOTS = REPO / "test-output" / "browser-contrast"
CONTRAST_CELLS = [
    "from flow_workbench import InMemoryStore, Workflow, WorkflowExecutionError\n"
    "from flow_workbench.demo import sample_dag\n"
    "from flow_workbench.notebook import RecoveryPanel, style_nodes, nodes_frame\n"
    "store = InMemoryStore()\n"
    "try:\n"
    "    Workflow(sample_dag(fail={'churn_model'}), 'etl', store).execute()\n"
    "except WorkflowExecutionError:\n"
    "    pass\n"
    "panel = RecoveryPanel(store, 'etl', dag=sample_dag())\n"
    "panel.preview('reset_failed')\n"
    "panel.show_details('churn_model')\n"
    "panel",
    "style_nodes(nodes_frame(store, 'etl'))",
]

# Every element of the workbench's outputs that shows text of its own (the pictures' SVG aside,
# which keeps a white ground), with its colour blended over the background it sits on, and the
# WCAG contrast ratio. Disabled controls are exempt, as WCAG has it.
CONTRAST_JS = """
(selector) => {
  const parse = (css) => {
    const m = css.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const parts = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const stack = [];
    for (let node = el; node; node = node.parentElement) {
      stack.push(parse(getComputedStyle(node).backgroundColor));
    }
    let colour = [255, 255, 255, 1];
    for (const layer of stack.reverse()) if (layer[3] > 0) colour = over(layer, colour);
    return colour;
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const found = [];
  for (const root of document.querySelectorAll(selector)) {
    for (const el of root.querySelectorAll('*')) {
      if (el.closest('svg') || el.closest(':disabled') || el.closest('[disabled]')) continue;
      const own = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim())
        .map((n) => n.textContent.trim()).join(' ');
      if (!own || el.getClientRects().length === 0) continue;
      const style = getComputedStyle(el);
      if (style.visibility === 'hidden' || Number(style.opacity) === 0) continue;
      const back = background(el);
      const text = over(parse(style.color), back);
      const [a, b] = [luminance(text), luminance(back)].sort((x, y) => y - x);
      const cls = typeof el.className === 'string' ? el.className.slice(0, 40) : '';
      found.push({ text: own.slice(0, 40), cls, ratio: (a + 0.05) / (b + 0.05), color: style.color });
    }
  }
  return found;
}
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_text_contrast_in_both_themes(theme: str, tmp_path: Path) -> None:
    """The recovery panel (preview message, detail pane, toolbar, node table) and a styled nodes
    table: every piece of text reads at >= 4.5:1 against what it is drawn on, in both themes."""
    sync_playwright = _require_browser()
    CONTRAST_SHOTS.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "root"
    root.mkdir()
    notebook = hostile_notebook("unused")
    notebook["cells"] = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
        for source in CONTRAST_CELLS
    ]
    (root / "contrast.ipynb").write_text(json.dumps(notebook), encoding="utf-8")
    settings = DARK_THEME if theme == "dark" else None
    lab = JupyterLab(root, tmp_path / "jupyter-home", tmp_path / "jupyterlab.log", settings=settings)
    console: list[str] = []
    try:
        lab.start()
        with sync_playwright() as playwright:
            context, page = launch_chromium(playwright, tmp_path / "chromium-profile", console, 1400)
            try:
                open_notebook(page, lab, "contrast.ipynb")
                run_all_cells(page)
                wait_for_every_cell(page)
                page.locator(".fw-recovery-panel .fw-details .fw-error").wait_for(timeout=STEP_TIMEOUT_MS)
                page.wait_for_timeout(500)  # the theme's and the widgets' styles settle
                dark = page.evaluate("() => document.body.dataset.jpThemeLight === 'false'")
                page.screenshot(path=str(CONTRAST_SHOTS / f"{theme}.png"), full_page=True)
                found = page.evaluate(CONTRAST_JS, ".jp-OutputArea-output")
            finally:
                context.close()
    finally:
        lab.stop()
    assert dark == (theme == "dark"), "the theme did not switch"
    texts = " ".join(item["text"] for item in found)
    for expected in ("Preview of", "churn_model", "RuntimeError", "nodes:", "failed"):
        assert expected in texts, f"{expected!r} not measured: {texts[:400]}"
    (CONTRAST_SHOTS / f"{theme}.json").write_text(json.dumps(found, indent=1), encoding="utf-8")
    poor = [item for item in found if item["ratio"] < 4.5]
    assert poor == [], f"{theme} theme: text below 4.5:1: {poor[:10]}"
