"""``./dev workbench`` (``flow-workbench lab``) lands on the quickstart notebook, and says where.

JupyterLab's own ``LabApp.default_url`` overrides ``ServerApp.default_url``, so the workbench once
opened the Launcher. This starts the server as ``./dev workbench`` does, on a free port, takes the
URL it prints, and checks that it is the quickstart's, that the server's root redirects there, and
that Chromium opening it shows quickstart.ipynb as the current document.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.browser import CHROMIUM, JupyterLab, launch_chromium

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "workbench"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.mark.e2e  # starts JupyterLab and Chromium
@pytest.mark.timeout(300)
def test_workbench_lands_on_the_quickstart_and_prints_its_url(tmp_path: Path) -> None:
    root = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, root)
    lab = JupyterLab(root, tmp_path / "jupyter-home", tmp_path / "lab.log", via_cli=True)
    try:
        lab.start()
        log = lab.log_text()
        assert "opening quickstart.ipynb" in log, log
        printed = re.findall(rf"http://127\.0\.0\.1:{lab.port}/\S+", log)
        assert printed, f"no URL printed:\n{log}"
        url = urllib.parse.urlsplit(printed[-1])
        assert url.path == "/lab/tree/quickstart.ipynb", printed
        assert "token" in urllib.parse.parse_qs(url.query)  # a token given to the server prints as "..."
        # the root redirects there too (what a browser opened on the server lands on)
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(lab.url(""), timeout=10)
        assert redirect.value.code == 302
        assert urllib.parse.urlsplit(redirect.value.headers["Location"]).path == "/lab/tree/quickstart.ipynb"
        if not CHROMIUM.exists():
            pytest.skip(f"{CHROMIUM} not found: the URL checks passed, the page check needs it")
        from playwright.sync_api import sync_playwright

        SHOTS.mkdir(parents=True, exist_ok=True)
        console: list[str] = []
        with sync_playwright() as playwright:
            context, page = launch_chromium(playwright, tmp_path / "profile", console, 900)
            try:
                page.goto(lab.url(url.path), timeout=60_000)  # the printed URL, with the real token
                current = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
                current.wait_for(timeout=60_000)
                page.locator(".jp-NotebookPanel .jp-MarkdownCell h1").first.wait_for(timeout=60_000)
                page.screenshot(path=str(SHOTS / "landing.png"))
                assert current.inner_text().strip() == "quickstart.ipynb"
                assert (
                    page.locator(".jp-Launcher").count() == 0 or not page.locator(".jp-Launcher").is_visible()
                )
            finally:
                context.close()
    finally:
        lab.stop()


def test_lab_refuses_to_open_a_notebook_the_folder_lacks(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "flow_workbench", "lab", "--dir", str(tmp_path), "--open", "nope.ipynb"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--open nope.ipynb: no such notebook in" in done.stderr
