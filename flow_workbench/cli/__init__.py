"""The ``flow-workbench`` command line: inspect, repair, convert and validate workflow state files."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from .. import __version__
from ..errors import FlowWorkbenchError, InvalidWorkflowIdError
from . import browse, check, convert, graph, history, repair, workbench
from ._common import CommandError, Handler, UsageError, one_line

PROG = "flow-workbench"

EPILOG = """\
exit codes: 0 ok, 1 problems found (bad files, unknown workflow or node, failed save),
2 usage error. Add --debug to see the traceback of an error.

examples:
  flow-workbench demo state/                      # three sample workflows to play with
  flow-workbench ls state/
  flow-workbench show state/ etl-failed
  flow-workbench history state/ etl-failed          # runs and attempts
  flow-workbench reset-failed state/ etl-failed --dry-run
  flow-workbench convert state/ go-state/ --to go-fb
"""


def build_parser() -> argparse.ArgumentParser:
    # Every sub-command accepts --debug too; SUPPRESS keeps it from overwriting the global one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect, repair and convert the state files of flow_workbench and of the Go library "
        "Flow Orchestrator (<id>.json and <id>.fb files in a folder).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (browse, history, repair, convert, check, graph, workbench):
        module.register(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 problems found, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python's exit flush from
        # complaining about stdout again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CommandError as error:
        return _failed(args, error, error.exit_code)
    except InvalidWorkflowIdError as error:
        return _failed(args, error, UsageError.exit_code)
    except (FlowWorkbenchError, OSError) as error:
        return _failed(args, error, 1)
    except Exception as error:  # a bug: say so in one line, the traceback is one flag away
        if args.debug:
            raise
        print(f"{PROG}: internal error: {type(error).__name__}: {one_line(str(error))}", file=sys.stderr)
        print(f"{PROG}: run again with --debug for the traceback", file=sys.stderr)
        return 1


def _failed(args: argparse.Namespace, error: Exception, code: int) -> int:
    """Report an expected error on one line of stderr (after its traceback with --debug)."""
    if args.debug:
        traceback.print_exception(error)
    message = one_line(str(error))
    if message:
        print(f"{PROG}: error: {message}", file=sys.stderr)
    return code
