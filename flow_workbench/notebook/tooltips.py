"""The escaped tooltip text of each node of a picture, cached by what it depends on."""

from __future__ import annotations

from ..data import NodeHistory
from ..dot import Timing, detail_lines, moment_of_nanoseconds, timing_of, wait_text
from ..status import NodeStatus
from .svg_parse import ascii_xml, xml_attribute

__all__ = [
    "NO_WAIT",
    "DetailsKey",
    "details_by_timing",
    "details_of_keys",
    "details_xml",
    "details_xml_of",
    "wait_of",
]

_DETAILS_CACHE_LIMIT = 4096

#: (status, attempts, timing, error type, error, status text, wait): what a tooltip depends on.
DetailsKey = tuple[NodeStatus | None, int, Timing, "str | None", "str | None", "str | None", "str | None"]

#: ``DetailsKey`` -> escaped tooltip text; most nodes of a run share
#: one (a fast run's nodes all read "completed, 1 attempt, 0.000 s"), so frames rarely build text.
_details_cache: dict[DetailsKey, str] = {}


def _details_text(key: DetailsKey) -> str:
    return ascii_xml(xml_attribute("\n".join(detail_lines(*key))))


def details_of_keys(keys: list[DetailsKey]) -> list[str]:
    """The escaped tooltip text of each key (cached; the cache is emptied when it grows too big)."""
    cache = _details_cache
    try:
        return list(map(cache.__getitem__, keys))  # the usual case: every text is known
    except KeyError:
        pass
    if len(cache) >= _DETAILS_CACHE_LIMIT:
        cache.clear()
    texts = []
    for key in keys:
        text = cache.get(key)
        if text is None:
            text = cache[key] = _details_text(key)
        texts.append(text)
    return texts


#: (status, attempts) -> {timing: escaped tooltip text} for nodes without an error.
_details_by_status: dict[tuple[NodeStatus | None, int], dict[Timing, str]] = {}


def details_by_timing(status: NodeStatus | None, attempts: int, timings: list[Timing]) -> list[str]:
    """``details_of_keys`` of nodes that differ only by their timing (looked up by it alone)."""
    texts = _details_by_status.get((status, attempts))
    if texts is None or len(texts) >= _DETAILS_CACHE_LIMIT:
        texts = _details_by_status[(status, attempts)] = {}
        if len(_details_by_status) >= _DETAILS_CACHE_LIMIT:
            _details_by_status.clear()
            _details_by_status[(status, attempts)] = texts
    try:
        return list(map(texts.__getitem__, timings))
    except KeyError:
        pass
    result = []
    for timing in timings:
        text = texts.get(timing)
        if text is None:
            text = texts[timing] = _details_text((status, attempts, timing, None, None, None, None))
        result.append(text)
    return result


def details_xml(
    status: NodeStatus | None,
    history: NodeHistory | None,
    status_text: str | None = None,
    wait: str | None = None,
) -> str:
    """The escaped tooltip lines after the name."""
    if history is None:
        return details_xml_of(status, 0, None, None, None, None, status_text, wait)
    return details_xml_of(
        status,
        history.attempts,
        history.started_at,
        history.finished_at,
        history.error_type,
        history.error,
        status_text,
        wait,
    )


def details_xml_of(
    status: NodeStatus | None,
    attempts: int,
    started_at: float | None,
    finished_at: float | None,
    error_type: str | None,
    error: str | None,
    status_text: str | None = None,
    wait: str | None = None,
) -> str:
    """``details_xml`` from plain fields (cached, like the texts ``SvgTemplate.render`` uses)."""
    timing = timing_of(started_at, finished_at)
    return details_of_keys([(status, attempts, timing, error_type, error, status_text, wait)])[0]


#: What ``wait_of`` is given for a node without a Go timer.
NO_WAIT = object()


def wait_of(nanoseconds: object) -> str | None:
    """``wait_text`` of a stored Go timer (unix nanoseconds), as ``WorkflowData.wait_until`` reads it."""
    if nanoseconds is NO_WAIT:
        return None
    return wait_text(moment_of_nanoseconds(nanoseconds))
