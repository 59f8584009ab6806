"""The browser tests' console filter hides one upstream widget race and nothing else."""

from __future__ import annotations

from tests.helpers.browser import page_errors

_RACE = "error: TypeError: Cannot read properties of null (reading 'processLuminoMessage')"
_MANAGER = (
    "http://127.0.0.1:1/lab/extensions/@jupyter-widgets/jupyterlab-manager/static/170.abc.js?v=abc:9:9831"
)
_CORE = "http://127.0.0.1:1/static/lab/jlab_core.123.js?v=123:13664:205050"


def test_only_the_widget_managers_dispose_race_is_left_out() -> None:
    race = f"{_RACE}\n    at z.processMessage ({_MANAGER})\n    at p ({_CORE})"
    from_elsewhere = f"{_RACE}\n    at evil (http://127.0.0.1:1/files/payload.js:1:1)\n    at p ({_CORE})"
    without_stack = _RACE
    others = ["error: Failed to load resource: 404", "pageerror: ReferenceError: x is not defined"]
    console = ["debug: Starting application", race, from_elsewhere, without_stack, *others, "warning: slow"]
    assert page_errors(console) == [from_elsewhere, without_stack, *others]
