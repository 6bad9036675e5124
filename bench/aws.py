"""Benchmark: apply and destroy against the emulated AWS, and the critical path of both.

For each case (1 controller + 2 workers, 3 + 5, then 1 + 2 with more worker pools or more
services) a fresh Python process plans, applies, plans again (must be empty) and destroys,
measuring wall time, AWS API calls (botocore's before-call event) and peak RSS. From the
engine's own step graph (:func:`squall.engine.run.steps_for`) it then computes:

- ``depth``: the longest chain of dependent steps, i.e. the fewest rounds of AWS work the
  dependency graph allows;
- ``sequential calls``: the longest chain weighted by the calls each step really made one
  after another (creates, waits, follow-up reads);
- ``est. real AWS``: the longest chain weighted by typical real-AWS durations per step
  (:data:`CREATE_S`, :data:`DELETE_S`), with the steps on that chain.

    .venv/bin/python bench/aws.py [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
ZONE, ZONE_ID = "aws.example.com", "Z3PAABBCFAKEC0"

# (label, controllers, workers, extra worker pools, services)
CASES = [
    ("1+2", 1, 2, 0, 0),
    ("3+5", 3, 5, 0, 0),
    ("1+2, 5 pools", 1, 2, 5, 0),
    ("1+2, 10 pools", 1, 2, 10, 0),
    # Each service adds rules to the worker security group; AWS's default quota of 60 rules
    # per group stops at about 14 services with the default allow list (see the docs).
    ("1+2, 6 services", 1, 2, 0, 6),
    ("1+2, 12 services", 1, 2, 0, 12),
]

# Typical real-AWS seconds for one step of each kind, including the waits squall makes in
# that step. Sources: AWS documentation and common experience with the console, Terraform
# and kOps; see docs/performance.md for the reasoning behind each figure.
CREATE_S = {
    "vpc": 5,  # CreateVpc is immediate; the Amazon IPv6 block takes a few seconds
    "internet_gateway": 2,
    "route_table": 1,
    "route": 1,
    "subnet": 2,  # create, then one call per attribute
    "route_table_association": 1,
    "security_group": 1,
    "security_group_rule": 1,
    "target_group": 1,
    # CreateLoadBalancer and its attributes; the 2-3 min an NLB stays "provisioning" overlap
    # the instances' boot, since nothing in apply waits for "active".
    "load_balancer": 3,
    "listener": 1,
    "launch_template": 1,
    "auto_scaling_group": 2,  # squall does not wait for the group's instances
    "instance": 30,  # RunInstances to "running" (booting the OS takes 30-60 s more)
    "target": 1,
    "record": 1,  # UPSERT; Route53 takes ~60 s to INSYNC, squall does not wait
}
DELETE_S = {
    "vpc": 2,
    "internet_gateway": 3,
    "route_table": 1,
    "route": 1,
    # An NLB's network interfaces linger after it is gone: DependencyViolation retries.
    "subnet": 60,
    "route_table_association": 1,
    "security_group": 10,
    "security_group_rule": 1,
    "target_group": 1,
    "load_balancer": 20,
    "listener": 1,
    "launch_template": 1,
    "auto_scaling_group": 90,  # force delete, then its instances terminate
    "instance": 60,  # terminate and wait for "terminated"
    "target": 1,
    "record": 1,
}


def cluster_toml(name: str, controllers: int, workers: int, pools: int, services: int) -> str:
    lines = [
        f'cluster_name = "{name}"',
        'region = "us-east-1"',
        f'dns_zone = "{ZONE}"',
        f'dns_zone_id = "{ZONE_ID}"',
        'ssh_authorized_key = "ssh-ed25519 '
        'AAAAC3NzaC1lZDI1NTE5AAAAIHKIpVqkGGP65CbQNrFi1EFnvqz1YfAP2n/riFs4iVqY demo@squall"',
        f"controller_count = {controllers}",
        f"worker_count = {workers}",
    ]
    for i in range(pools):
        lines += ["[[worker_pools]]", f'name = "pool{i}"', "count = 1"]
    for i in range(services):
        lines += ["[[services]]", f'name = "svc{i}"', f"port = {1000 + i}"]
        lines += [f"node_port = {30000 + i}"]
    return "\n".join(lines) + "\n"


def longest(steps: list[Any], weight: Callable[[Any], float]) -> tuple[float, list[Any]]:
    """The heaviest chain of steps through their ``after`` edges, and the chain itself."""

    @functools.cache
    def best(i: int) -> tuple[float, tuple[int, ...]]:
        before = [best(d) for d in steps[i].after]
        w, chain = max(before, default=(0.0, ()))
        return w + weight(steps[i]), (*chain, i)

    sys.setrecursionlimit(10_000)
    w, chain = max((best(i) for i in range(len(steps))), default=(0.0, ()))
    return w, [steps[i] for i in chain]


def graph(steps: list[Any], calls: Counter[str], seconds: dict[str, int]) -> dict[str, Any]:
    real = [s for s in steps if not s.implied]
    depth, _ = longest(steps, lambda s: 0 if s.implied else 1)
    sequential, _ = longest(steps, lambda s: calls.get(s.label, 0))
    est, chain = longest(steps, lambda s: 0 if s.implied else seconds[s.change.kind])
    return {
        "steps": len(real),
        "depth": int(depth),
        "sequential_calls": int(sequential),
        "est_real_s": est,
        "chain": [s.change.kind for s in chain if not s.implied],
    }


def child(case: list[Any], work: Path) -> dict[str, Any]:
    from squall import spec
    from squall.aws.cluster import Cluster
    from squall.engine import run
    from squall.engine.aws import Aws
    from squall.state import State

    label, controllers, workers, pools, services = case
    name = "b" + "".join(c for c in label if c.isalnum())[:20]
    config = work / f"{name}.toml"
    config.write_text(cluster_toml(name, controllers, workers, pools, services))
    s = spec.load(config)

    total: Counter[str] = Counter()
    per_step: Counter[str] = Counter()
    local = threading.local()

    def on_call(op: str) -> None:
        total[op] += 1
        label = getattr(local, "step", None)
        if label:
            per_step[label] += 1

    aws = Aws(s.region, on_call=on_call)
    cluster = Cluster(s, State(work / ".squall" / name), aws=aws)
    # Count each step's calls: a step runs on one thread from start to end.
    for kind in cluster.ctx.kinds.values():
        for verb in ("create", "update", "delete"):
            method = getattr(kind, verb)

            def traced(*args: Any, _m: Any = method, _k: str = kind.kind, **kw: Any) -> Any:
                target = args[1] if isinstance(args[1], str) else args[1].name
                local.step = f"{_k} {target}"
                try:
                    return _m(*args, **kw)
                finally:
                    local.step = None

            setattr(kind, verb, traced)

    def timed(fn: Callable[[], T]) -> tuple[T, float, int]:
        before, start = sum(total.values()), time.perf_counter()
        value = fn()
        return value, time.perf_counter() - start, sum(total.values()) - before

    plan, plan_s, plan_calls = timed(lambda: cluster.plan(pin=True))
    outcome, apply_s, apply_calls = timed(lambda: cluster.apply(plan))
    run.check(outcome)
    # Create and delete steps share labels: keep the apply's counts apart.
    apply_steps = Counter(per_step)
    per_step.clear()
    replan, replan_s, replan_calls = timed(cluster.plan)
    assert replan.empty, replan.render()
    doomed, dplan_s, dplan_calls = timed(cluster.destroy_plan)
    gone, destroy_s, destroy_calls = timed(lambda: cluster.apply(doomed))
    run.check(gone)
    assert cluster.destroy_plan().empty
    return {
        "case": label,
        "resources": len(plan.actions),
        "plan": [plan_s, plan_calls],
        "apply": [apply_s, apply_calls],
        "second_plan": [replan_s, replan_calls],
        "destroy": [dplan_s + destroy_s, dplan_calls + destroy_calls],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "apply_graph": graph(run.steps_for(plan), apply_steps, CREATE_S),
        "destroy_graph": graph(run.steps_for(doomed), per_step, DELETE_S),
        "top_calls": total.most_common(5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(child(json.loads(args.case), Path(tmp))))
        return

    from squall import emulator

    rows = []
    with emulator.start({ZONE: ZONE_ID}) as emulated:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(emulated.env(), AWS_EC2_METADATA_DISABLED="true")
        for case in CASES:
            out = subprocess.run(
                [sys.executable, __file__, "--case", json.dumps(case)],
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                sys.exit(f"case {case[0]} failed:\n{out.stderr}")
            rows.append(json.loads(out.stdout.splitlines()[-1]))
    print(f"squall against the emulated AWS (moto), Python {sys.version.split()[0]}")
    head = (
        f"{'case':<18} {'res':>4} {'plan s/calls':>13} {'apply s/calls':>14} "
        f"{'2nd plan':>12} {'destroy s/calls':>16} {'RSS MiB':>8}"
    )
    print(head)
    for r in rows:
        cells = [f"{r[k][0]:.2f}/{r[k][1]}" for k in ("plan", "apply", "second_plan", "destroy")]
        print(
            f"{r['case']:<18} {r['resources']:>4} {cells[0]:>13} {cells[1]:>14} {cells[2]:>12} "
            f"{cells[3]:>16} {r['peak_rss_mib']:>8.0f}"
        )
    print()
    print(
        f"{'case':<18} {'':>6} {'steps':>6} {'depth':>6} {'seq. calls':>10} "
        f"{'est. real AWS s':>15}  critical chain"
    )
    for r in rows:
        for what in ("apply", "destroy"):
            g = r[f"{what}_graph"]
            print(
                f"{r['case']:<18} {what:>6} {g['steps']:>6} {g['depth']:>6} "
                f"{g['sequential_calls']:>10} {g['est_real_s']:>15.0f}  {' > '.join(g['chain'])}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
