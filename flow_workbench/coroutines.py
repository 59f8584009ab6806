"""Running an async action's coroutine to completion in the attempt's thread, cancellable."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .node import NodeContext

#: How often the attempt's cancel event is checked while the coroutine runs (it is a
#: ``threading.Event`` set by the engine, which cannot wake an event loop by itself).
CANCEL_POLL_SECONDS: Final = 0.02


def run_coroutine(coroutine: Coroutine[Any, Any, Any], ctx: NodeContext) -> Any:
    """Run ``coroutine`` on a fresh event loop and return its result.

    One loop per attempt (``asyncio.Runner``): attempts never share loop state, whatever thread
    runs them (a runner, the thread of a timed attempt, a pool, a Dask worker), and everything
    the coroutine left behind is cancelled and closed with it. When the attempt is cancelled
    (``wf.cancel()``, a timeout: ``ctx.cancelled``) the coroutine's task is cancelled, so it sees
    ``CancelledError`` at its next ``await``, and the attempt raises ``NodeCancelledError``.
    A thread that already runs a loop (a notebook kernel's) runs the coroutine in a thread of its own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner() as runner:
            return runner.run(_supervise(coroutine, ctx))
    return _run_in_own_thread(coroutine, ctx)


async def _supervise(coroutine: Coroutine[Any, Any, Any], ctx: NodeContext) -> Any:
    from .node import NodeCancelledError

    task = asyncio.ensure_future(coroutine)
    while not task.done():
        await asyncio.wait((task,), timeout=CANCEL_POLL_SECONDS)
        if ctx.cancelled and not task.done():
            task.cancel()
            await asyncio.wait((task,))  # the coroutine may clean up, or even refuse to stop
    try:
        return task.result()
    except asyncio.CancelledError:
        # A BaseException: leaving it would end the run like a crash. A cancellation asked for is
        # honoured (pending, run again later); one the coroutine caused itself fails the attempt.
        ctx.raise_if_cancelled()
        raise NodeCancelledError(f"the coroutine of node {ctx.node!r} was cancelled from inside") from None


def _run_in_own_thread(coroutine: Coroutine[Any, Any, Any], ctx: NodeContext) -> Any:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run_coroutine(coroutine, ctx)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True, name=f"flow-workbench-async-{ctx.node}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
