"""Commands that edit a stored state through the recovery API: ``reset``, ``reset-failed``, ``mark``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from ..errors import WorkflowLockedError
from ..recovery import MARKABLE_STATUSES, MissingDAGError, mark_nodes, reset_failed, reset_nodes
from ..stores import StateFormat, WorkflowStore
from ..stores.open import store_for_file
from ._common import (
    CommandError,
    Commands,
    add_workflow_arguments,
    find_state_file,
    note,
    print_json,
    printable,
    say,
)

Edit = Callable[[WorkflowStore, str, bool], list[str]]


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    target = argparse.ArgumentParser(add_help=False)
    add_workflow_arguments(target, verb="edit")
    target.add_argument("--dry-run", action="store_true", help="only report what would change")
    target.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="while a run (or another edit) holds the workflow, wait up to SECONDS for it instead of failing",
    )
    target.add_argument("--json", action="store_true", help="print the result as JSON")
    parents = [common, target]
    after = (
        "The edit holds the workflow's execution lease (<ID>.lease) while it loads, changes and saves "
        "the state: while a run or another edit holds it, the command fails naming the holder (host, "
        "pid, since), or waits for it with --wait. The change is saved with a version check: if the "
        "workflow was saved by someone else meanwhile, nothing is written and the command fails (Go "
        "FlatBuffers files carry no version, so for them the check cannot see other writers). Unknown "
        "node names change nothing either."
    )

    reset = commands.add_parser(
        "reset",
        parents=parents,
        help="set nodes back to pending",
        description="Set NODEs back to pending (status, output and error cleared; attempts kept), "
        "so the next run executes them again. " + after,
    )
    reset.add_argument("nodes", nargs="+", metavar="NODE", help="node to reset")
    reset.add_argument(
        "--downstream", action="store_true", help="also reset every node depending on them (needs the DAG)"
    )
    reset.set_defaults(handler=run_reset)

    failed = commands.add_parser(
        "reset-failed",
        parents=parents,
        help="set failed nodes, and the nodes they skipped, back to pending",
        description="Set every failed node, and every node skipped because of one, back to pending. " + after,
    )
    failed.set_defaults(handler=run_reset_failed)

    mark = commands.add_parser(
        "mark",
        parents=parents,
        help="mark nodes completed or skipped by hand",
        description="Set NODEs to completed or skipped by hand (their errors are cleared). Nodes the "
        "engine skipped because of them become pending again when none of their dependencies still "
        "stops them (so marking a failed node completed lets the next run execute what it skipped). " + after,
    )
    mark.add_argument("nodes", nargs="+", metavar="NODE", help="node to mark")
    mark.add_argument(
        "--as",
        dest="status",
        required=True,
        choices=[s.value for s in MARKABLE_STATUSES],
        help="the status to give them",
    )
    mark.set_defaults(handler=run_mark)


def run_reset(args: argparse.Namespace) -> int:
    def edit(store: WorkflowStore, workflow_id: str, dry_run: bool) -> list[str]:
        return reset_nodes(
            store, workflow_id, args.nodes, downstream=args.downstream, dry_run=dry_run, lease_wait=args.wait
        )

    return _edit(args, ("reset", "reset"), "to pending", edit)


def run_reset_failed(args: argparse.Namespace) -> int:
    def edit(store: WorkflowStore, workflow_id: str, dry_run: bool) -> list[str]:
        return reset_failed(store, workflow_id, dry_run=dry_run, lease_wait=args.wait)

    return _edit(args, ("reset", "reset"), "to pending", edit)


def run_mark(args: argparse.Namespace) -> int:
    def edit(store: WorkflowStore, workflow_id: str, dry_run: bool) -> list[str]:
        return mark_nodes(store, workflow_id, args.nodes, args.status, dry_run=dry_run, lease_wait=args.wait)

    return _edit(args, ("mark", "marked"), args.status, edit, requested=args.nodes)


def _edit(
    args: argparse.Namespace,
    verbs: tuple[str, str],
    outcome: str,
    edit: Edit,
    requested: Sequence[str] | None = None,
) -> int:
    """Run one recovery function on the workflow's file and report the nodes it affected.

    ``requested``: the nodes the command names (``mark``); affected nodes beyond them are the
    skipped nodes the edit sent back to pending, reported apart.
    """
    verb, past = verbs
    state_file = find_state_file(args.dir, args.id, args.format, writing=True)
    store, layout = store_for_file(state_file.path)  # writes back the layout the file has
    try:
        with store:
            affected = edit(store, args.id, args.dry_run)
    except MissingDAGError as error:
        raise CommandError(
            f"workflow {args.id!r} was stored without its DAG (e.g. written by the Go library), so the "
            "nodes downstream are unknown; name the nodes to reset without --downstream"
        ) from error
    except WorkflowLockedError as error:
        waited = f"still held after waiting {args.wait:g}s; " if args.wait else ""
        raise CommandError(
            f"{error.situation}; {waited}wait for it to finish, or pass --wait SECONDS to wait for it"
        ) from error
    named = set(requested) if requested is not None else set(affected)
    own = [name for name in affected if name in named]
    released = [name for name in affected if name not in named]
    if args.json:
        report = {
            "id": args.id,
            "file": str(state_file.path),
            "command": args.command,
            "dry_run": args.dry_run,
            "nodes": affected,
        }
        if requested is not None:
            report["back_to_pending"] = released
        print_json(report)
    elif not affected:
        say(f"nothing to {verb}: no node of {args.id!r} needs it")
    else:
        done = f"dry run, nothing changed: would {verb}" if args.dry_run else past
        names = ", ".join(map(printable, own))
        lines = [f"{done} {len(own)} node(s) of {args.id!r} {outcome}: {names}"] if own else []
        if released:
            again = "would go" if args.dry_run else "went"
            lines.append(
                f"{len(released)} node(s) skipped because of them {again} back to pending: "
                + ", ".join(map(printable, released))
            )
        say("\n".join(lines))
    if affected and not args.dry_run and layout is StateFormat.GO_FLATBUFFERS:
        note("the Go FlatBuffers layout has no audit log, so this edit is not recorded in the file")
    return 0
