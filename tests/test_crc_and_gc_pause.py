"""The fast crc32 gives zlib's values, and decodes pause the cyclic collector without leaving it off."""

from __future__ import annotations

import gc
import random
import threading
import zlib
from pathlib import Path

import pytest

from flow_workbench._gc_pause import cyclic_gc_paused
from flow_workbench.data import WorkflowData
from flow_workbench.errors import CorruptStateError
from flow_workbench.status import NodeStatus
from flow_workbench.stores._crc import crc32
from flow_workbench.stores.flatbuffers import FlatBuffersStore
from flow_workbench.stores.json_file import JSONFileStore


def test_crc32_gives_zlibs_values_for_every_buffer_kind_and_start_value() -> None:
    rng = random.Random(7)
    for size in (0, 1, 3, 15, 16, 17, 63, 64, 4095, 4096, 65537, 1 << 20):
        raw = rng.randbytes(size)
        start = rng.getrandbits(32)
        view = memoryview(bytearray(raw))
        assert crc32(raw) == zlib.crc32(raw)
        assert crc32(view, start) == zlib.crc32(view, start)
        assert crc32(view[size // 3 :]) == zlib.crc32(raw[size // 3 :])
    assert crc32 is not zlib.crc32  # the fast one is installed (a dependency)


@pytest.fixture
def collector_restored():  # type: ignore[no-untyped-def]
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


@pytest.mark.usefixtures("collector_restored")
def test_the_pause_nests_and_restores_the_collector_as_it_found_it() -> None:
    gc.enable()
    with cyclic_gc_paused():
        assert not gc.isenabled()
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()  # the caller's choice is kept
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()


@pytest.mark.usefixtures("collector_restored")
def test_overlapping_pauses_in_threads_end_with_the_collector_on() -> None:
    gc.enable()
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with cyclic_gc_paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    inside.wait(10)
    with cyclic_gc_paused():
        pass
    assert not gc.isenabled()  # the other thread's pause goes on
    leave.set()
    thread.join(10)
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_restored")
@pytest.mark.parametrize("store_class", [FlatBuffersStore, JSONFileStore])
def test_loads_leave_the_collector_on_even_when_the_file_is_corrupt(
    tmp_path: Path, store_class: type
) -> None:
    gc.enable()
    store = store_class(tmp_path)
    data = WorkflowData("wf")
    data.set_node_status("a", NodeStatus.COMPLETED)
    store.save(data)
    assert store.load("wf").get_node_status("a") is NodeStatus.COMPLETED
    assert gc.isenabled()
    path = Path(store.path_of("wf"))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptStateError):
        store.load("wf")
    assert gc.isenabled()
