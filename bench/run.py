"""Runs the benchmark scripts N times and reports each goal's range; a goal is met only if every run meets it.

    python bench/run.py --repeat 5            # every script, five rounds
    python bench/run.py --repeat 5 stores     # only bench/bench_stores.py
    python bench/run.py --repeat 2 stores -- --nodes 10000   # arguments after -- go to each script

Each round runs every selected script once, in order (so drift of the shared machine spreads over
all of them); a script without goals (its first run reported none) runs in the first round only.
Every script reports its goals through ``_common.report_goals``; this runner collects them, prints
per goal the minimum, median and maximum of the measured values across rounds, and writes
``bench/results/summary.json`` and ``summary.md`` (date, core count, ready for the README).
Exit status 1 when any goal was missed in any round or a script failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import GOALS_DIR_VARIABLE

BENCH_DIR = Path(__file__).resolve().parent
#: In the order ``./dev bench`` has always run them.
SCRIPTS = (
    "engine",
    "stores",
    "codecs",
    "live_view",
    "tables",
    "recovery",
    "redis_fencing",
    "scheduling",
    "notebook_scale",
    "artifacts",
)


@dataclass
class GoalRuns:
    """One goal's outcome in every round that measured it."""

    script: str
    goal: str
    target: str
    values: list[float] = field(default_factory=list)
    met: list[bool] = field(default_factory=list)

    @property
    def all_met(self) -> bool:
        return bool(self.met) and all(self.met)


@dataclass
class ScriptRuns:
    script: str
    exit_codes: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    has_goals: bool | None = None  # unknown until its first run
    #: Rounds in which the script failed without reporting goals (crashed, or a goal file missing).
    broken: list[int] = field(default_factory=list)


def run_script(
    script: str, round_number: int, results: Path, goals_root: Path, script_args: list[str]
) -> tuple[int, float, list[dict[str, object]] | None]:
    """Run ``bench/bench_<script>.py`` once, its output shown and logged; (exit code, seconds,
    the goals it reported, or None when it wrote no goal file)."""
    goals_dir = goals_root / f"{script}-{round_number}"  # fresh: every file in it is this run's
    goals_dir.mkdir(parents=True)
    log_path = results / "logs" / f"{script}-{round_number}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ, **{GOALS_DIR_VARIABLE: str(goals_dir)})
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / f"bench_{script}.py"), *script_args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
        )
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = process.wait()
    seconds = time.perf_counter() - started
    files = sorted(goals_dir.glob("*.json"))
    if not files:
        return code, seconds, None
    reported: list[dict[str, object]] = []
    for path in files:
        reported += json.loads(path.read_text())["goals"]
    return code, seconds, reported


def summarize(
    goals: dict[tuple[str, str], GoalRuns], scripts: dict[str, ScriptRuns], rounds: int
) -> dict[str, object]:
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "rounds": rounds,
        "goals": [
            {
                "script": g.script,
                "goal": g.goal,
                "target": g.target,
                "min": min(g.values),
                "median": statistics.median(g.values),
                "max": max(g.values),
                "values": g.values,
                "runs_met": sum(g.met),
                "runs": len(g.met),
                "met": g.all_met,
            }
            for g in goals.values()
        ],
        "scripts": [
            {
                "script": s.script,
                "runs": len(s.exit_codes),
                "exit_codes": s.exit_codes,
                "seconds": s.seconds,
                "broken_rounds": s.broken,
            }
            for s in scripts.values()
        ],
    }


DASH = "\N{EN DASH}"  # ranges in the README are written with it


def _number(value: float) -> str:
    return f"{value:.3g}"


def markdown(summary: dict[str, Any], goals: list[GoalRuns], scripts: list[ScriptRuns]) -> str:
    """The summary as Markdown: a heading line (date, cores) and one table row per goal."""
    rounds = summary["rounds"]
    selected = "" if len(scripts) == len(SCRIPTS) else " " + " ".join(s.script for s in scripts)
    lines = [
        f"Benchmarks: `./dev bench --repeat {rounds}{selected}`, {summary['date'][:10]}, "
        f"{summary['cores']} cores "
        f"({summary['machine']}, Python {summary['python']}). Measured: min{DASH}max (median) across "
        "rounds; a goal is met only when every round meets it.",
        "",
        f"| goal | target | measured min{DASH}max (median) | rounds met | met |",
        "|---|---|---|---|---|",
    ]
    for g in goals:
        measured = (
            f"{_number(min(g.values))}{DASH}{_number(max(g.values))} ({_number(statistics.median(g.values))})"
        )
        verdict = "yes" if g.all_met else "**no**"
        lines.append(f"| {g.goal} | {g.target} | {measured} | {sum(g.met)}/{len(g.met)} | {verdict} |")
    broken = [s for s in scripts if s.broken]
    if broken:
        failures = ", ".join(f"{s.script} (rounds {', '.join(map(str, s.broken))})" for s in broken)
        lines += ["", f"Scripts that failed without reporting goals: {failures}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds (a goal is met only if met in all)")
    parser.add_argument(
        "scripts", nargs="*", metavar="SCRIPT", help=f"any of {', '.join(SCRIPTS)} (default: all)"
    )
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    script_args = argv[split + 1 :]
    unknown = sorted(set(args.scripts) - set(SCRIPTS))
    if unknown or args.repeat < 1:
        parser.error(f"unknown scripts {unknown}" if unknown else "--repeat must be at least 1")
    selected = [name for name in SCRIPTS if name in args.scripts] if args.scripts else list(SCRIPTS)
    results: Path = args.results
    goals_root = Path(tempfile.mkdtemp(prefix="bench-goals-"))
    scripts = {name: ScriptRuns(name) for name in selected}
    goals: dict[tuple[str, str], GoalRuns] = {}
    for round_number in range(1, args.repeat + 1):
        for name in selected:
            runs = scripts[name]
            if runs.has_goals is False:
                continue  # informational: once is enough
            print(f"\n==> round {round_number}/{args.repeat}: bench/bench_{name}.py", flush=True)
            code, seconds, reported = run_script(name, round_number, results, goals_root, script_args)
            runs.exit_codes.append(code)
            runs.seconds.append(seconds)
            if reported is None and code != 0:
                runs.broken.append(round_number)  # crashed before reporting
                continue
            if not runs.has_goals:
                runs.has_goals = bool(reported)
            for entry in reported or []:
                key = (name, str(entry["goal"]))
                record = goals.setdefault(key, GoalRuns(name, str(entry["goal"]), str(entry["target"])))
                record.values.append(float(entry["value"]))  # type: ignore[arg-type]
                record.met.append(bool(entry["met"]))
    summary = summarize(goals, scripts, args.repeat)
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(summary, indent=2))
    text = markdown(summary, list(goals.values()), list(scripts.values()))
    (results / "summary.md").write_text(text)
    print("\n" + text)
    print(f"(written to {results / 'summary.md'} and summary.json; logs in {results / 'logs'})")
    missed = [g for g in goals.values() if not g.all_met]
    # A goal measured in fewer rounds than its script ran (a round crashed before reporting it).
    incomplete = [g for g in goals.values() if len(g.met) < len(scripts[g.script].exit_codes)]
    failed = missed or incomplete or any(s.broken for s in scripts.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
