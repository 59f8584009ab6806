"""What lease fencing costs a RedisStore write: save_node and save with and without a held lease.

Starts its own redis-server (as the tests do) on a free loopback port. Usage:
``python bench/bench_redis_fencing.py [--nodes 100] [--writes 1000] [--repeat 7]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # the repository root: tests.helpers

from _common import fmt_seconds, measure, print_table

from flow_workbench import NodeStatus, WorkflowData
from flow_workbench.stores.redis import RedisStore
from tests.helpers.servers import running_redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--writes", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with running_redis(Path(tempfile.mkdtemp(prefix="fw-bench-redis-"))) as server:
        store = RedisStore(server.url, prefix="bench:")
        data = WorkflowData("wf")
        names = [f"n{i}" for i in range(args.nodes)]
        for name in names:
            data.set_node_status(name, NodeStatus.PENDING)
        store.save(data)

        def node_records() -> None:
            for index in range(args.writes):
                name = names[index % len(names)]
                data.set_node_status(name, NodeStatus.COMPLETED)
                store.save_node(data, name)

        def saves() -> None:
            for _ in range(args.writes // 10):
                store.save(data)

        def ping() -> None:
            for _ in range(args.writes):
                store.client.ping()

        rows = []
        for label, work, count in (
            ("save_node", node_records, args.writes),
            ("save", saves, args.writes // 10),
        ):
            plain = measure(f"{label} unfenced", work, repeat=args.repeat)
            with store.execution_lease("wf", ttl=600):
                fenced = measure(f"{label} fenced", work, repeat=args.repeat)
            rows.append(
                {
                    "operation": f"{label} ({args.nodes} nodes)",
                    "unfenced": fmt_seconds(plain.median / count),
                    "fenced (lease held)": fmt_seconds(fenced.median / count),
                    "ratio": f"{fenced.median / plain.median:.2f}",
                }
            )
        round_trip = measure("ping", ping, repeat=args.repeat)
        print_table("Lease fencing cost per write (medians)", rows)
        print(f"\none round trip (PING): {fmt_seconds(round_trip.median / args.writes)}")
        store.close()


if __name__ == "__main__":
    main()
