"""Benchmark: apply and destroy against the emulated AWS.

For 1 controller + 2 workers and 3 controllers + 5 workers, measures wall time and the number
of AWS API calls (counted with botocore's before-call event) of: the first plan (which also
renders the node configs), the apply, a second plan (which must be empty), and the destroy.

    .venv/bin/python bench/aws.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from squall import emulator, spec
from squall.aws.cluster import Cluster
from squall.engine import run
from squall.engine.aws import Aws
from squall.state import State

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
SIZES = [(1, 2), (3, 5)]


def timed(calls: Counter[str], fn: Callable[[], T]) -> tuple[T, float, int]:
    before = sum(calls.values())
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start, sum(calls.values()) - before


def measure(controllers: int, workers: int, work: Path) -> dict[str, Any]:
    text = (ROOT / "examples" / "cluster.toml").read_text()
    data = spec.load(ROOT / "examples" / "cluster.toml").model_dump()
    name = f"bench{controllers}x{workers}"
    config = work / f"{name}.toml"
    config.write_text(
        text.replace('cluster_name = "tempest"', f'cluster_name = "{name}"')
        .replace("controller_count = 1", f"controller_count = {controllers}")
        .replace("worker_count = 2", f"worker_count = {workers}")
    )
    s = spec.load(config)
    assert s.dns_zone_id == data["dns_zone_id"]
    calls: Counter[str] = Counter()
    aws = Aws(s.region, on_call=lambda op: calls.update([op]))
    cluster = Cluster(s, State(work / ".squall" / name), aws=aws)

    plan, plan_s, plan_calls = timed(calls, lambda: cluster.plan(pin=True))
    outcome, apply_s, apply_calls = timed(calls, lambda: cluster.apply(plan))
    run.check(outcome)
    replan, replan_s, replan_calls = timed(calls, lambda: cluster.plan())
    assert replan.empty, replan.render()
    doomed, _, destroy_plan_calls = timed(calls, cluster.destroy_plan)
    gone, destroy_s, destroy_calls = timed(calls, lambda: cluster.apply(doomed))
    run.check(gone)
    assert cluster.destroy_plan().empty
    return {
        "cluster": f"{controllers} + {workers}",
        "resources": len(plan.actions),
        "plan": (plan_s, plan_calls),
        "apply": (apply_s, apply_calls),
        "second plan": (replan_s, replan_calls),
        "destroy": (destroy_s, destroy_calls + destroy_plan_calls),
        "top calls": ", ".join(f"{op.split(':')[1]} {n}" for op, n in calls.most_common(4)),
    }


def main() -> None:
    console = Console(width=160)
    with (
        tempfile.TemporaryDirectory() as tmp,
        emulator.start({"aws.example.com": "Z3PAABBCFAKEC0"}) as emulated,
    ):
        for k in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[k]
        os.environ.update(emulated.env())
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        rows = [measure(c, w, Path(tmp)) for c, w in SIZES]
    table = Table(title=f"squall against the emulated AWS (moto), Python {sys.version.split()[0]}")
    for col in ("cluster", "resources", "plan", "apply", "second plan", "destroy"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["cluster"],
            str(r["resources"]),
            *(
                f"{r[k][0]:.2f} s / {r[k][1]} calls"
                for k in ("plan", "apply", "second plan", "destroy")
            ),
        )
    console.print(table)
    for r in rows:
        console.print(f"{r['cluster']}: most frequent calls: {r['top calls']}")
    console.print(
        "plan includes rendering the node configs (TLS keys on the first run); destroy "
        "includes its plan. Times against moto show squall's own overhead and call count, "
        "not AWS's provisioning time."
    )


if __name__ == "__main__":
    main()
