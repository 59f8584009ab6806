"""Profiles the store paths of bench_stores.py's goals (P1, P1r, P3, P5) with pyinstrument.

    pip install pyinstrument && python bench/profile_stores.py [--nodes 100000] [--loops 20]

Writes one text profile per path to ``bench/results/profiles/`` and prints each one's top lines.
Not a goal script: timings under a profiler are inflated; read where the time goes, not how much.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench_stores import big_state, chain_run, edited_state, level_edit, load_edit_save

from flow_workbench import Persistence
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore


def profile(name: str, function: Callable[[], object], loops: int, folder: Path, interval: float) -> None:
    from pyinstrument import Profiler

    function()  # warm-up
    profiler = Profiler(interval=interval)
    profiler.start()
    for _ in range(loops):
        function()
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    (folder / f"{name}.txt").write_text(text)
    print(f"\n===== {name} ({loops} loops) =====")
    print("\n".join(text.splitlines()[:60]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.0002, help="sampling interval (s)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profiles"))
    parser.add_argument("paths", nargs="*", default=["P1", "P1r", "P1r-json", "P3", "P5"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="fw-profile-"))
    fb, js = FlatBuffersStore(base / "fb"), JSONFileStore(base / "json")
    state = big_state(args.nodes)
    names = list(state.node_statuses())
    fb.save(state)
    levels = iter(range(10**9))
    edited = edited_state(args.nodes)
    fb.save(edited.copy())
    js.save(edited.copy())

    def level_edit_and_save() -> None:
        level_edit(state, names, next(levels))
        fb.save(state)

    paths: dict[str, Callable[[], object]] = {
        "P1": level_edit_and_save,
        "P1r": lambda: load_edit_save(fb, "edit", "node-054321"),
        "P1r-json": lambda: load_edit_save(js, "edit", "node-054321"),
        "P3": lambda: fb.load("big"),
        "P5": lambda: chain_run(1_000, base, Persistence.NODE),
    }
    for name in args.paths:
        loops = max(2, args.loops // 10) if name == "P5" else args.loops
        profile(name, paths[name], loops, args.out, args.interval)


if __name__ == "__main__":
    main()
