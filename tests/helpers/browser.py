"""A real JupyterLab server and Debian's Chromium for the browser end-to-end test.

``JupyterLab`` starts ``jupyter lab`` from this virtual environment on a free loopback port, with a
token, a temporary root folder and temporary Jupyter config/data/runtime/settings/workspace folders,
so nothing of the machine's own Jupyter set-up (or of a previous run) leaks in. ``stop`` ends the
whole process group (the server and its kernels) and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.servers import free_port

#: Debian's Chromium (``./dev setup`` installs it); FLOW_WORKBENCH_CHROMIUM points elsewhere.
CHROMIUM = Path(os.environ.get("FLOW_WORKBENCH_CHROMIUM", "/usr/bin/chromium"))

#: Headless flags for Debian's Chromium in containers and CI (root needs --no-sandbox).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
]

#: JupyterLab user settings: no news/update prompts, no "restore workspace" surprises.
LAB_SETTINGS: dict[str, dict[str, object]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    # Every cell in the page: by default JupyterLab renders (and drops) cells as they scroll by,
    # so elements a test holds could vanish under it.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

#: The settings that switch JupyterLab to its dark theme.
DARK_THEME: dict[str, dict[str, object]] = {
    "@jupyterlab/apputils-extension/themes.jupyterlab-settings": {"theme": "JupyterLab Dark"},
}


class JupyterLab:
    """``jupyter lab`` serving ``root`` on 127.0.0.1 with a random token; logs go to ``log_path``."""

    def __init__(
        self,
        root: Path,
        home: Path,
        log_path: Path,
        *,
        via_cli: bool = False,
        settings: dict[str, dict[str, object]] | None = None,
    ) -> None:
        """``via_cli``: start it as ``./dev workbench`` does, through ``flow_workbench lab``;
        ``settings``: user settings on top of ``LAB_SETTINGS`` (e.g. the dark theme)."""
        self.via_cli = via_cli
        self.settings = {**LAB_SETTINGS, **(settings or {})}
        self.root = root
        self.home = home
        self.log_path = log_path
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def start(self, timeout: float = 90.0) -> None:
        dirs = {
            name: self.home / name.lower()
            for name in (
                "JUPYTER_CONFIG_DIR",
                "JUPYTER_DATA_DIR",
                "JUPYTER_RUNTIME_DIR",
                "JUPYTERLAB_SETTINGS_DIR",
                "JUPYTERLAB_WORKSPACES_DIR",
                "IPYTHONDIR",
            )
        }
        for folder in dirs.values():
            folder.mkdir(parents=True, exist_ok=True)
        for name, settings in self.settings.items():
            target = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(settings), encoding="utf-8")
        env = {**os.environ, **{name: str(folder) for name, folder in dirs.items()}}
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_PLATFORM_DIRS", None)
        env["PYTHONUNBUFFERED"] = "1"
        launcher = [sys.executable, "-m", "jupyterlab"]
        if self.via_cli:
            launcher = [sys.executable, "-m", "flow_workbench", "lab", "--dir", str(self.root), "--"]
        command = [
            *launcher,
            "--no-browser",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            *([] if self.via_cli else [f"--ServerApp.root_dir={self.root}"]),  # lab passes --notebook-dir
            "--ServerApp.open_browser=False",
            "--ServerApp.disable_check_xsrf=False",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabServerApp.workspaces_dir=" + str(dirs["JUPYTERLAB_WORKSPACES_DIR"]),
            "--LabServerApp.user_settings_dir=" + str(dirs["JUPYTERLAB_SETTINGS_DIR"]),
            "--ServerApp.terminals_enabled=False",
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log_file = log_file
        self.process = subprocess.Popen(
            command,
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the kernels too
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:g} s:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            except ProcessLookupError:
                pass
        if process is not None:
            # Kernels started by the server share its process group; end any straggler.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        log_file, self._log_file = self._log_file, None
        if log_file is not None:
            log_file.close()  # type: ignore[attr-defined]

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            return f"(no server log: {error})"
        return "\n".join(text.splitlines()[-lines:])


#: An upstream race of @jupyter-widgets/jupyterlab-manager (8.x): a Lumino message reaching a
#: widget view disposed meanwhile (``processMessage`` reads ``this._view``, which ``dispose`` set
#: to null). Replacing a box's children several times within milliseconds (``StoreBrowser.show``
#: for every row in one cell) triggers it in about one page of ten; nothing on the page changes.
_WIDGETS_DISPOSE_RACE = "TypeError: Cannot read properties of null (reading 'processLuminoMessage')"
_WIDGETS_MANAGER = "/lab/extensions/@jupyter-widgets/jupyterlab-manager/"


def page_errors(console: list[str]) -> list[str]:
    """The errors among ``console``'s lines, except the widget manager's dispose race above
    (recognised by its message and by its frames being the manager's and JupyterLab's own)."""
    errors = [line for line in console if line.startswith(("error:", "pageerror:"))]
    return [line for line in errors if not _is_widgets_dispose_race(line)]


def _is_widgets_dispose_race(line: str) -> bool:
    first, _, stack = line.partition("\n")
    if not first.endswith(_WIDGETS_DISPOSE_RACE):
        return False
    frames = [frame.strip() for frame in stack.splitlines() if frame.strip()]
    return bool(frames) and _WIDGETS_MANAGER in frames[0] and all("/static/" in frame for frame in frames)


def launch_chromium(
    playwright: Any, profile: Path, console: list[str], height: int = 1200
) -> tuple[Any, Any]:
    """(context, page) of a headless Chromium with a fresh profile; the page's console messages
    and uncaught errors are appended to ``console``. Close the context when done."""
    context = playwright.chromium.launch_persistent_context(
        str(profile),  # a fresh --user-data-dir
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": height},
    )
    page = context.pages[0] if context.pages else context.new_page()
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    return context, page
