"""Reliability: hostile files and hostile workflow ids, and a notebook browser over a broken folder.

``test_file_stores.py``, ``test_flatbuffers_codec.py`` and ``test_json_codec.py`` check that
truncations, bit flips and random bytes of *our* files make ``load`` raise ``CorruptStateError``.
Here every damaged input (ours and the Go library's JSON and FlatBuffers files, journals, crafted
FlatBuffers offsets and lengths far beyond the buffer, entries sharing one offset, times no
display can show, special files) goes through *every* reader
a user meets: ``load``, ``summary``, ``node_status``, ``list_workflows``, ``scan_folder`` (whose
error rows must name a store error, not a hidden ``IndexError``), ``workflows_frame`` and the CLI
``ls`` (run with ``--debug``, so an internal error would raise instead of being reported).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flow_workbench.cli import main as cli_main
from flow_workbench.data import WorkflowData
from flow_workbench.errors import CorruptStateError, InvalidWorkflowIdError, StoreError
from flow_workbench.status import NodeStatus
from flow_workbench.stores._journal import journal_suffix
from flow_workbench.stores.base import TransactionalStore, WorkflowStore
from flow_workbench.stores.files import FileStore
from flow_workbench.stores.flatbuffers_codec import FlatBuffersCodec
from flow_workbench.stores.folder import scan_folder
from flow_workbench.testing import rich_state
from flow_workbench.validation import INT64_MAX, INT64_MIN, TIME_MAX, TIME_MIN
from tests.helpers.hostile import (
    data_sharing_one_string,
    forged_native,
    go_fb_with_timestamp,
    go_json,
    ours_json_with_update_time,
    outputs_sharing_one_string,
    statuses_sharing_one_table,
)
from tests.helpers.paths import GOLDEN_GO
from tests.helpers.reliability import HEAVY, heavy, open_file_store, record_figure, tree
from tests.helpers.stores import IMPLEMENTATIONS

#: What a reader may raise for a damaged file (CorruptStateError, StoreIOError, WorkflowNotFound...).
ALLOWED = StoreError
#: ``FolderEntry.error_type`` values a scan may report for a damaged file.
SCAN_ERRORS = {"CorruptStateError", "StoreIOError"}


def _pandas() -> object:
    return pytest.importorskip("pandas")


# --- the corpus --------------------------------------------------------------------------------------


def originals(tmp_path: Path) -> dict[str, tuple[str, bytes]]:
    """name -> (file name, bytes) of one valid file of every format."""
    made = tmp_path / "originals"
    found: dict[str, tuple[str, bytes]] = {}
    for kind in ("json", "flatbuffers"):
        store = open_file_store(kind, made / kind)
        store.save(rich_state("victim"))
        path = Path(store.path_of("victim"))
        found[f"ours-{kind}"] = (path.name, path.read_bytes())
    for golden in sorted(GOLDEN_GO.iterdir()):
        found[f"go-{golden.name}"] = (golden.name, golden.read_bytes())
    return found


def mutations(raw: bytes, budget: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """Damaged variants of ``raw``: truncations, bit flips, byte runs, crafted u32 offsets and
    lengths pointing far beyond the buffer, and random bytes; about ``budget`` of them, or all
    truncation prefixes and every aligned u32 overwrite when the budget allows."""
    rng = random.Random(seed)
    size = len(raw)
    share = max(budget // 5, 1)
    cuts = range(size) if share >= size else sorted(rng.sample(range(size), share))
    for cut in cuts:
        yield f"truncated-{cut}", raw[:cut]
    for index in range(share):
        flipped = bytearray(raw)
        for _ in range(1 + index % 3):
            bit = rng.randrange(size * 8)
            flipped[bit // 8] ^= 1 << (bit % 8)
        yield f"flip-{index}", bytes(flipped)
    # FlatBuffers offsets and vector/string lengths are little-endian u32s at aligned positions.
    huge = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, size, size - 3, 0x10000000]
    positions = list(range(0, size - 3, 4))
    picks = [(p, v) for p in positions for v in huge]
    if len(picks) > share:
        picks = rng.sample(picks, share)
    for position, value in picks:
        crafted = bytearray(raw)
        struct.pack_into("<I", crafted, position, value)
        yield f"u32-{position}-{value:x}", bytes(crafted)
    for index in range(share):
        start = rng.randrange(size)
        run = bytearray(raw)
        run[start : start + rng.randint(1, 16)] = bytes([rng.choice([0, 0xFF, rng.randrange(256)])]) * 16
        yield f"run-{index}", bytes(run[:size])
    for index in range(max(share // 4, 1)):
        yield f"random-{index}", rng.randbytes(rng.choice([0, 1, 4, 8, 16, 64, size]))
    yield "empty", b""
    yield "doubled", raw + raw


# --- probing one folder with every reader ------------------------------------------------------------


def probe_store(store: FileStore, workflow_id: str) -> None:
    """Every store reader: a result or a StoreError, nothing else."""
    for call in (
        lambda: store.load(workflow_id),
        lambda: store.summary(workflow_id),
        lambda: store.node_status(workflow_id, "node_0"),
        lambda: store.node_status(workflow_id, "no such node"),
        lambda: store.exists(workflow_id),
    ):
        with contextlib.suppress(ALLOWED):
            call()
    store.list_workflows()  # names only: must never fail because of a file's content


def probe_folder(folder: Path, *, frames: bool = True) -> None:
    """Folder readers: never raise; error rows name a store error; the CLI exits 0 or 1."""
    for entry in scan_folder(folder):
        if entry.error is not None:
            assert entry.error_type in SCAN_ERRORS, f"{entry.path}: {entry.error_type}: {entry.error}"
    if frames:
        from flow_workbench.notebook.tables import workflows_frame

        frame = workflows_frame(folder)
        assert len(frame) == len(scan_folder(folder))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["ls", str(folder), "--debug"])
    assert code in (0, 1), err.getvalue()
    assert "internal error" not in err.getvalue()


def probe(folder: Path, name: str, *, frames: bool = True) -> None:
    stem = name.rpartition(".")[0]
    for kind in ("json", "flatbuffers"):
        store = open_file_store(kind, folder)
        probe_store(store, stem)
        store.close()
    probe_folder(folder, frames=frames)


def run_corpus(tmp_path: Path, budget_per_file: int) -> int:
    count = 0
    for label, (name, raw) in originals(tmp_path).items():
        folder = tmp_path / "probe" / label
        folder.mkdir(parents=True)
        target = folder / name
        for index, (_, damaged) in enumerate(mutations(raw, budget_per_file, seed=len(raw))):
            target.write_bytes(damaged)
            # The pandas table and the CLI are slower: run them on every 4th input.
            probe(folder, name, frames=index % 4 == 0)
            count += 1
    record_figure("damaged files probed", count)
    return count


@pytest.mark.timeout(240)
def test_damaged_files_of_every_format_give_a_result_or_a_store_error(tmp_path: Path) -> None:
    """~1,250 damaged files (ours JSON and FlatBuffers, Go JSON and FlatBuffers): truncations, bit
    flips, crafted huge offsets/lengths, byte runs, random bytes; every reader answers or raises a
    ``StoreError``, the folder readers never raise, and nothing hangs (per-test timeout)."""
    assert run_corpus(tmp_path, budget_per_file=300) >= 1000


@heavy
@pytest.mark.timeout(3600)
def test_heavy_ten_thousand_damaged_files(tmp_path: Path) -> None:
    """Every truncation prefix and thousands of other mutations: over 10,000 inputs."""
    assert run_corpus(tmp_path, budget_per_file=3000) >= 10_000


def crafted_files(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of crafted files, about ``count`` of them: Go FlatBuffers entries
    sharing one string or table (a few to 100,000 references, small to 1 MB strings), and files
    of every format holding times no display can show or values beyond int64."""
    rng = random.Random(seed)
    times: list[float] = [1e300, -1e300, 1.7976931348623157e308, 2.0**63, -(2.0**63), 1e19, -1e19, 5e-324]
    ints = [INT64_MAX, INT64_MIN, INT64_MAX + 1, (1 << 64) - 1]
    pick = rng.choice
    makers: list[Callable[[], tuple[str, bytes]]] = [
        lambda: ("wf.fb", outputs_sharing_one_string(pick([2, 50, 2_000]), pick([1, 2_000, 200_000]))),
        lambda: ("wf.fb", statuses_sharing_one_table(pick([1, 1_000, 100_000]), pick([0, 3, 100_000]))),
        lambda: ("wf.fb", data_sharing_one_string(pick([2, 2_000]), pick([10, 300_000]))),
        lambda: ("wf.json", go_json(__timestamp=pick([*times, *ints]))),
        lambda: ("wf.json", go_json(waits={"a": pick(ints)})),
        lambda: ("wf.json", ours_json_with_update_time(pick(times))),
        lambda: ("wf.fb", go_fb_with_timestamp(pick([INT64_MAX, INT64_MIN, 0, -1]))),
        lambda: ("wf.fb", native_with_times(pick(times), forged=False)),
        lambda: ("wf.fb", native_with_times(pick([*times, math.nan, math.inf, -math.inf]))),
    ]
    for index in range(count):
        yield makers[index % len(makers)]()


def native_with_times(value: float, *, forged: bool = True) -> bytes:
    """Our FlatBuffers layout with ``value`` as every time (creation, update, start, finish);
    written by ``encode`` (which refuses non-finite times) unless ``forged``."""
    columns = rich_state("wf")._unsafe_columns()
    columns.created_at = value
    columns.started_at = dict.fromkeys(columns.started_at, value)
    columns.finished_at = dict.fromkeys(columns.finished_at, value)
    if forged:
        return forged_native(columns, updated_at=value)
    return bytes(FlatBuffersCodec().encode(WorkflowData.from_columns(columns), version=1, updated_at=value))


def probe_crafted(tmp_path: Path, count: int) -> int:
    probed = 0
    for index, (name, raw) in enumerate(crafted_files(count, seed=13)):
        folder = tmp_path / f"crafted-{index}"
        folder.mkdir()
        (folder / name).write_bytes(raw)
        probe(folder, name, frames=index % 4 == 0)
        for entry in scan_folder(folder):  # a time no display can show is unknown, never an error
            if entry.summary is not None and entry.summary.updated_at is not None:
                assert TIME_MIN <= entry.summary.updated_at <= TIME_MAX
        probed += 1
    record_figure("crafted shared-offset and out-of-range-time files probed", probed)
    return probed


@pytest.mark.timeout(240)
def test_crafted_shared_offset_and_out_of_range_time_files_sample(tmp_path: Path) -> None:
    """A sample of crafted files (entries sharing offsets, times of 1e300 and +-2^63, NaN):
    every reader answers or raises a ``StoreError``, folder readers never raise, and summaries
    show unshowable times as unknown."""
    assert probe_crafted(tmp_path, count=18) == 18


@heavy
@pytest.mark.timeout(3600)
def test_heavy_crafted_shared_offset_and_out_of_range_time_files(tmp_path: Path) -> None:
    assert probe_crafted(tmp_path, count=450) == 450


def _journal_corpus(tmp_path: Path, kind: str, budget: int) -> int:
    """Damage the journal of a workflow saved node by node (its snapshot stays valid)."""
    source = tmp_path / f"journal-src-{kind}"
    store = open_file_store(kind, source)
    data = rich_state("victim")
    store.save(data)
    for index in range(3):
        data.set_output("node_0", {"record": index})
        store.save_node(data, "node_0")
    store.close()
    journal_name = "victim" + journal_suffix(".json" if kind == "json" else ".fb")
    raw = (source / journal_name).read_bytes().rstrip(b"\0")
    count = 0
    for index, (_, damaged) in enumerate(mutations(raw, budget, seed=7)):
        folder = tmp_path / f"journal-{kind}-{index}"
        shutil.copytree(source, folder)
        (folder / journal_name).write_bytes(damaged)
        store = open_file_store(kind, folder)
        with contextlib.suppress(ALLOWED):
            loaded = store.load("victim")
            # A damaged tail is a crash's unacknowledged append: the snapshot plus a prefix.
            prefixes = [{"rows": 0, "label": "out 0", "values": [0, 0.0]}] + [{"record": i} for i in range(3)]
            assert loaded.get_output("node_0") in prefixes
        probe_store(store, "victim")
        probe_folder(folder, frames=index % 8 == 0)
        count += 1
    return count


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["json", "flatbuffers"])
def test_damaged_journals_give_a_prefix_of_the_records_or_a_store_error(kind: str, tmp_path: Path) -> None:
    assert _journal_corpus(tmp_path, kind, budget=1000 if HEAVY else 100) >= (800 if HEAVY else 80)


# --- special files ------------------------------------------------------------------------------------


def plant(folder: Path, name: str, what: str, valid: bytes) -> None:
    path = folder / name
    if what == "directory":
        path.mkdir()
        (path / "inner.json").write_bytes(valid)
    elif what == "symlink-valid":
        outside = folder.parent / f"outside-{name}"
        outside.write_bytes(valid)
        path.symlink_to(outside)
    elif what == "symlink-dangling":
        path.symlink_to(folder.parent / "does-not-exist")
    elif what == "symlink-dev-zero":
        path.symlink_to("/dev/zero")
    elif what == "symlink-loop":
        path.symlink_to(path)
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "device":
        if os.geteuid() != 0:
            pytest.skip("creating a device node needs root")
        os.mknod(path, 0o600 | 0o020000, os.makedev(1, 5))  # a character device like /dev/zero
    elif what == "oversized":
        with open(path, "wb") as sparse:  # sparse: 65 MiB of nothing, over the 64 MiB cap
            sparse.truncate(65 * 1024 * 1024)
    elif what == "unreadable":
        path.write_bytes(valid)
        path.chmod(0)
    else:  # pragma: no cover
        raise AssertionError(what)


SPECIALS = [
    "directory",
    "symlink-valid",
    "symlink-dangling",
    "symlink-dev-zero",
    "symlink-loop",
    "fifo",
    "device",
    "oversized",
    "unreadable",
]


@pytest.mark.timeout(20)
@pytest.mark.filterwarnings("ignore:ignoring unreadable transaction manifest")
@pytest.mark.parametrize("role", ["state", "journal", "manifest", "lock"])
@pytest.mark.parametrize("what", SPECIALS)
@pytest.mark.parametrize("kind", ["json", "flatbuffers"])
def test_special_files_where_a_file_should_be_never_crash_or_hang(
    kind: str, what: str, role: str, tmp_path: Path
) -> None:
    """A directory, symlinks (to a valid file, dangling, to /dev/zero, to itself), a FIFO, a
    device node, a 65 MiB file and an unreadable file, in the place of a state file, a journal,
    a transaction manifest or a lock file: opening the store, every reader, the folder scan,
    the table and ``ls`` answer or raise a ``StoreError``, never hang; a good workflow next to
    it stays readable, and saving the bad one never writes through the special file."""
    folder = tmp_path / "store"
    store = open_file_store(kind, folder)
    for name in ("good", "victim"):
        data = rich_state(name)
        store.save(data)
        data.set_output("node_0", "journaled")
        store.save_node(data, "node_0")
    store.close()
    suffix = ".json" if kind == "json" else ".fb"
    valid = (folder / f"victim{suffix}").read_bytes()
    names = {
        "state": f"victim{suffix}",
        "journal": "victim" + journal_suffix(suffix),
        "manifest": ".transactions/0123456789abcdef0123456789abcdef.manifest",
        "lock": "victim.lock",
    }
    path = folder / names[role]
    path.parent.mkdir(exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    plant(path.parent, path.name, what, valid)
    outside_before = tree(tmp_path / "outside") if (tmp_path / "outside").exists() else {}

    opened = open_file_store(kind, folder)  # a hostile manifest is ignored, with a warning
    probe_store(opened, "victim")
    assert opened.load("good").get_output("node_0") == "journaled"
    probe_folder(folder)
    fresh = WorkflowData("victim")
    with contextlib.suppress(ALLOWED):
        opened.save(fresh)
    if role == "state" and what.startswith("symlink") and what != "symlink-loop":
        assert path.is_symlink(), "a save replaced or followed a planted symlink"
    if what == "symlink-valid":
        assert (path.parent.parent / f"outside-{path.name}").read_bytes() == valid, "wrote through a link"
    assert (tree(tmp_path / "outside") if (tmp_path / "outside").exists() else {}) == outside_before
    opened.close()
    if what == "unreadable":
        with contextlib.suppress(OSError):
            path.chmod(0o600)


# --- hostile workflow ids -----------------------------------------------------------------------------

HOSTILE_IDS = [
    "",
    ".",
    "..",
    "../escape",
    "../../etc/passwd",
    "a/../../escape",
    "sub/dir",
    "/etc/passwd",
    "/tmp/escape",
    "\\windows\\path",
    "C:\\escape",
    "nul\x00byte",
    "new\nline",
    "esc\x1b]52;c;aGk=\x07",  # a terminal escape sequence
    "c1\x9bcontrol",
    "a" * 201,
    "é" * 101,  # 202 bytes of UTF-8
    "x" * 5000,
    "\udcff",  # lone surrogate (a file name whose bytes are not UTF-8)
]


def hostile_calls(store: WorkflowStore, bad: str, good: WorkflowData) -> dict[str, Callable[[], object]]:
    """Every store method that takes an id, called with ``bad``."""
    try:
        data = WorkflowData(bad)
    except InvalidWorkflowIdError:
        data = good.copy()
        data._c.workflow_id = bad  # bypass the constructor's check: the store must check too
    data.set_node_status("node_0", NodeStatus.COMPLETED)

    def lease() -> None:
        with store.execution_lease(bad):
            pass

    calls: dict[str, Callable[[], object]] = {
        "save": lambda: store.save(data),
        "save_node": lambda: store.save_node(data, "node_0"),
        "load": lambda: store.load(bad),
        "delete": lambda: store.delete(bad),
        "summary": lambda: store.summary(bad),
        "node_status": lambda: store.node_status(bad, "node_0"),
        "lease": lease,
    }
    if isinstance(store, TransactionalStore):
        calls["transaction"] = lambda: store.transaction().save(data)
    return calls


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", sorted(IMPLEMENTATIONS))
def test_hostile_workflow_ids_are_refused_and_nothing_is_written_anywhere(kind: str, tmp_path: Path) -> None:
    """Ids with ``..``, separators, absolute paths, NUL, newlines, 201 and 5000 characters,
    unicode look-alikes of '/' and '.', shell and URL tricks: every store method refuses them
    with ``InvalidWorkflowIdError`` and the parent folder's listing (and the store's) is
    unchanged afterwards."""
    store = IMPLEMENTATIONS[kind](tmp_path / "store")
    good = rich_state("good")
    store.save(good)
    before = tree(tmp_path)
    for bad in HOSTILE_IDS:
        for name, call in hostile_calls(store, bad, good).items():
            with pytest.raises(InvalidWorkflowIdError):
                call()
                pytest.fail(f"{name}({bad!r}) was accepted")
        with contextlib.suppress(InvalidWorkflowIdError):
            assert store.exists(bad) is False
    assert tree(tmp_path) == before, "a hostile id wrote something"
    assert store.list_workflows() == ["good"]
    assert not Path("/tmp/escape").exists() and not (tmp_path / "escape").exists()


# --- the notebook -------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_browser_over_a_folder_of_hostile_files_shows_errors_and_keeps_working(tmp_path: Path) -> None:
    """A folder with truncated, bit-flipped, crafted, oversized, special (FIFO, directory,
    symlink, device) files and a damaged journal next to good ones: ``StoreBrowser`` opens it,
    lists every file with its error, shows a good workflow's nodes table, and keeps working
    after the user selects a broken row."""
    _pandas()
    pytest.importorskip("ipywidgets")
    from flow_workbench.notebook.browser import StoreBrowser

    folder = tmp_path / "states"
    corpus = originals(tmp_path)
    json_raw, fb_raw = corpus["ours-json"][1], corpus["ours-flatbuffers"][1]
    with open_file_store("flatbuffers", folder) as store:
        good = rich_state("good")
        store.save(good)
        good.set_output("node_1", "journaled")
        store.save_node(good, "node_1")
    (folder / "truncated.json").write_bytes(json_raw[: len(json_raw) // 2])
    flipped = bytearray(fb_raw)
    flipped[5] ^= 0x10  # inside the file identifier
    (folder / "flipped.fb").write_bytes(bytes(flipped))
    crafted = bytearray(fb_raw)
    struct.pack_into("<I", crafted, 0, 0xFFFFFFF0)
    (folder / "crafted.fb").write_bytes(bytes(crafted))
    (folder / "random.json").write_bytes(random.Random(1).randbytes(300))
    for name, what in [
        ("fifo.json", "fifo"),
        ("directory.fb", "directory"),
        ("link.json", "symlink-valid"),
        ("device.fb", "device"),
        ("oversized.json", "oversized"),
    ]:
        plant(folder, name, what, json_raw)
    shutil.copyfile(GOLDEN_GO / "v012_format_full.json", folder / "v012_format_full.json")
    with open_file_store("json", folder) as store:
        journaled = rich_state("journaled")
        store.save(journaled)
        journaled.set_output("node_0", "x")
        store.save_node(journaled, "node_0")
    with open(folder / "journaled.json-journal", "r+b") as journal:
        journal.seek(20)
        journal.write(b"\xff\xff\xff\x7f")  # a record length far beyond the file

    browser = StoreBrowser(folder)
    frame = browser.frame
    errors = dict(zip(frame["id"], frame["error"], strict=True))
    for broken in ("truncated", "flipped", "crafted", "random", "oversized"):
        assert isinstance(errors[broken], str) and errors[broken], f"{broken} shows no error"
    assert not isinstance(errors["good"], str), errors["good"]
    assert "unreadable" in browser.title.value
    broken_row = int(frame.index[frame["id"] == "truncated"][0])
    browser.selector.value = broken_row
    assert browser.panel is None and "cannot be read" in browser.message.value
    browser.select("good")
    assert browser.panel is not None and browser.panel.data is not None
    assert browser.panel.data.get_output("node_1") == "journaled"
    assert "node_0" in browser.panel.table.value and "failing" in browser.panel.table.value
    browser.select("v012_format_full")
    assert browser.panel is not None
    browser.refresh()
    assert browser.panel is not None and browser.panel.workflow_id == "v012_format_full"


# --- regressions of bugs found by this suite ----------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("what", ["fifo", "device", "directory"])
def test_a_special_file_named_like_a_journal_is_corrupt_not_a_hang(what: str, tmp_path: Path) -> None:
    """Regression: ``read_journal`` opened ``<id>.journal`` blocking and read it to EOF, so a
    FIFO there hung ``load``, ``summary``, ``scan_folder`` and the notebook forever, and a
    device like /dev/zero was read without end. Now it is a ``CorruptStateError`` naming it."""
    folder = tmp_path / "store"
    store = open_file_store("json", folder)
    store.save(rich_state("victim"))
    plant(folder, "victim.json-journal", what, b"")
    with pytest.raises(CorruptStateError, match="journal is not a regular file"):
        store.load("victim")
    with pytest.raises(CorruptStateError):
        store.summary("victim")
    [entry] = scan_folder(folder)
    assert entry.error_type == "CorruptStateError"


@pytest.mark.timeout(20)
@pytest.mark.filterwarnings("ignore:ignoring unreadable transaction manifest")
@pytest.mark.parametrize("what", ["fifo", "directory", "symlink-dangling", "oversized"])
def test_a_special_file_named_like_a_manifest_does_not_lock_the_folder_out(what: str, tmp_path: Path) -> None:
    """Regression: a directory, FIFO, symlink or oversized file named ``.transactions/*.manifest``
    made every ``FileStore(...)``, ``load`` and ``save`` of the folder raise
    ``CorruptStateError``, while a manifest with damaged *content* was ignored with a warning.
    Both are now ignored with a warning."""
    folder = tmp_path / "store"
    open_file_store("json", folder).save(rich_state("victim"))
    (folder / ".transactions").mkdir()
    plant(folder / ".transactions", "0123456789abcdef0123456789abcdef.manifest", what, b"")
    store = open_file_store("json", folder)
    data = store.load("victim")
    store.save(data)
    assert store.load("victim").version == 2
