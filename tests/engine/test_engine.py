"""The reconciler on its own: ordering, parallelism, retries, adoption, plans.

The kinds here keep their resources in memory; everything else (planning, ordering, the
thread pool, retries) is the engine's real code.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Hashable
from typing import Any

import botocore.exceptions
import pytest

from squall.engine import run
from squall.engine.aws import Aws, create_once
from squall.engine.core import Actual, Context, EngineError, Kind, Ref, Resource
from squall.engine.plan import make_plan, order


def client_error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}}, "Op"
    )


class Store:
    """A fake cloud: resources by kind and id, and a log of what happened when."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, dict[str, Any]]] = {}
        self.log: list[tuple[str, str, str, float]] = []  # (event, kind, name, time)
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def add(self, kind: str, name: str, props: dict[str, Any], owner: str | None = "c") -> str:
        with self.lock:
            rid = f"{kind}-{next(self.ids)}"
            self.items.setdefault(kind, {})[rid] = {
                "name": name,
                "props": dict(props),
                "owner": owner,
            }
            return rid

    def note(self, event: str, kind: str, name: str) -> None:
        with self.lock:
            self.log.append((event, kind, name, time.monotonic()))

    def events(self, event: str) -> list[str]:
        return [name for e, _, name, _ in self.log if e == event]


class Fake(Kind):
    """A kind kept in a :class:`Store`; :func:`fake` makes one per kind name."""

    def __init__(
        self,
        store: Store,
        *,
        barrier: threading.Barrier | None = None,
        fail_create: set[str] | None = None,
        blocked_deletes: dict[str, int] | None = None,
    ) -> None:
        self.store = store
        self.barrier = barrier
        self.fail_create = fail_create or set()
        # name → how many delete attempts AWS refuses with DependencyViolation.
        self.blocked_deletes = blocked_deletes if blocked_deletes is not None else {}

    def discover(self, ctx: Context) -> list[Actual]:
        items = self.store.items.get(self.kind, {})
        return [
            Actual(self.kind, rid, i["name"], dict(i["props"]), owned=i["owner"] == ctx.cluster)
            for rid, i in items.items()
            if i["owner"] in (ctx.cluster, None)
        ]

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        self.store.note("start", self.kind, name)
        if self.barrier is not None:
            self.barrier.wait()
        time.sleep(0.02)
        if name in self.fail_create:
            raise client_error("InvalidParameterValue")
        rid = self.store.add(self.kind, name, props, ctx.cluster)
        self.store.note("create", self.kind, name)
        return Actual(self.kind, rid, name, dict(props))

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        self.store.items[self.kind][actual.id]["props"] = dict(props)
        self.store.note("update", self.kind, name)
        return Actual(self.kind, actual.id, name, dict(props))

    def delete(self, ctx: Context, actual: Actual) -> None:
        left = self.blocked_deletes.get(actual.name, 0)
        if left:
            self.blocked_deletes[actual.name] = left - 1
            raise client_error("DependencyViolation")
        del self.store.items[self.kind][actual.id]
        self.store.note("delete", self.kind, actual.name)


def fake(
    store: Store,
    kind: str,
    depends_on: tuple[str, ...] = (),
    *,
    base: type[Fake] = Fake,
    immutable: frozenset[str] = frozenset(),
    sensitive: frozenset[str] = frozenset(),
    **options: Any,
) -> Fake:
    cls = type(
        f"Fake_{kind}",
        (base,),
        {"kind": kind, "depends_on": depends_on, "immutable": immutable, "sensitive": sensitive},
    )
    return cls(store, **options)


class Labelled(Fake):
    """A kind found by content (like routes), not by name."""

    def identity(self, name: str, props: dict[str, Any]) -> Hashable | None:
        return (props["parent"], props["port"])

    def discover(self, ctx: Context) -> list[Actual]:
        found = super().discover(ctx)
        for a in found:
            a.ident = (a.props["parent"], a.props["port"])
        return found


def context(*kinds: Kind, cluster: str = "c", **kw: Any) -> Context:
    # No AWS call is made: the kinds keep their resources in memory.
    aws = Aws("us-east-1")
    return Context(aws, cluster, kinds, retry_delay=0.01, **kw)


def res(kind: str, key: str, **props: Any) -> Resource:
    return Resource(kind, key, key, props)


def test_order_follows_refs_and_rejects_cycles() -> None:
    a = res("k", "a")
    b = res("k", "b", parent=Ref("a"))
    c = res("k", "c", parent=Ref("b"), other=[Ref("a")])
    d = res("k", "d")
    assert [r.key for r in order([c, d, b, a])] == ["d", "a", "b", "c"]
    with pytest.raises(EngineError, match="cycle"):
        order([res("k", "x", p=Ref("y")), res("k", "y", p=Ref("x"))])
    with pytest.raises(EngineError, match="not desired"):
        order([res("k", "x", p=Ref("nowhere"))])


def test_apply_creates_in_dependency_order_with_real_ids() -> None:
    store = Store()
    ctx = context(fake(store, "k"))
    desired = [
        res("k", "c", parent=Ref("b")),
        res("k", "b", parent=Ref("a")),
        res("k", "a"),
    ]
    plan = make_plan(ctx, desired, region="r")
    assert [c.action for c in plan.changes] == ["create"] * 3
    outcome = run.apply(ctx, plan)
    run.check(outcome)
    assert store.events("create") == ["a", "b", "c"]
    by_name = {i["name"]: (rid, i) for rid, i in store.items["k"].items()}
    assert by_name["b"][1]["props"]["parent"] == by_name["a"][0]
    assert by_name["c"][1]["props"]["parent"] == by_name["b"][0]
    ctx.forget()
    assert make_plan(ctx, desired, region="r").empty


def test_independent_resources_run_in_parallel() -> None:
    store = Store()
    # Four creates that each wait for the other three: only a parallel apply gets through.
    barrier = threading.Barrier(4, timeout=10)
    ctx = context(fake(store, "k", barrier=barrier))
    plan = make_plan(ctx, [res("k", f"n{i}") for i in range(4)], region="r")
    run.check(run.apply(ctx, plan, parallelism=4))
    assert sorted(store.events("create")) == ["n0", "n1", "n2", "n3"]


def test_parallelism_bounds_concurrency() -> None:
    store = Store()
    barrier = threading.Barrier(3, timeout=0.5)
    ctx = context(fake(store, "k", barrier=barrier))
    plan = make_plan(ctx, [res("k", f"n{i}") for i in range(3)], region="r")
    outcome = run.apply(ctx, plan, parallelism=2)
    # Two workers can never gather three at the barrier.
    assert outcome.failures


def test_failure_skips_dependents_only() -> None:
    store = Store()
    ctx = context(fake(store, "k", fail_create={"a"}))
    desired = [res("k", "a"), res("k", "b", parent=Ref("a")), res("k", "x")]
    outcome = run.apply(ctx, make_plan(ctx, desired, region="r"))
    assert store.events("create") == ["x"]
    assert [s.change.name for s, _ in outcome.failures] == ["a"]
    with pytest.raises(run.ApplyError) as err:
        run.check(outcome)
    message = str(err.value)
    assert "\n" not in message
    assert "creating k a" in message and "InvalidParameterValue" in message


def test_adopts_what_exists_and_diffs_fields() -> None:
    store = Store()
    existing = store.add("k", "a", {"size": 1, "zone": "z1"})
    store.add("k", "b", {"parent": existing, "size": 5})
    ctx = context(fake(store, "k", immutable=frozenset({"zone"})))
    desired = [
        res("k", "a", size=2, zone="z1"),
        res("k", "b", parent=Ref("a"), size=5),
    ]
    plan = make_plan(ctx, desired, region="r")
    assert [(c.action, c.name) for c in plan.actions] == [("update", "a")]
    assert plan.actions[0].diff == {"size": (1, 2)}
    assert plan.actions[0].actual is not None and plan.actions[0].actual.id == existing
    run.check(run.apply(ctx, plan))
    assert store.events("create") == []
    assert store.items["k"][existing]["props"]["size"] == 2


def test_replacement_reaches_dependents() -> None:
    store = Store()
    a = store.add("k", "a", {"zone": "z1"})
    store.add("k", "b", {"parent": a})
    ctx = context(fake(store, "k", immutable=frozenset({"zone"})))
    desired = [res("k", "a", zone="z2"), res("k", "b", parent=Ref("a"))]
    plan = make_plan(ctx, desired, region="r")
    actions = {c.name: c for c in plan.actions}
    assert actions["a"].action == "replace" and actions["a"].forces_replacement == ("zone",)
    assert actions["b"].action == "update"
    assert plan.to_json()["changes"][1]["fields"]["parent"]["after"] == "(known after apply)"
    run.check(run.apply(ctx, plan))
    new_a = next(rid for rid, i in store.items["k"].items() if i["name"] == "a")
    assert new_a != a
    b = next(i for i in store.items["k"].values() if i["name"] == "b")
    assert b["props"]["parent"] == new_a


def test_more_than_one_match_is_an_error() -> None:
    store = Store()
    one = store.add("k", "a", {})
    two = store.add("k", "a", {})
    ctx = context(fake(store, "k"))
    with pytest.raises(EngineError) as err:
        make_plan(ctx, [res("k", "a")], region="r")
    assert one in str(err.value) and two in str(err.value)


def test_content_identity_adopts_unowned_and_never_deletes_it() -> None:
    store = Store()
    parent = store.add("p", "parent", {})
    store.add("l", "made-by-someone", {"parent": parent, "port": 80}, owner=None)
    store.add("l", "users-own", {"parent": parent, "port": 9999}, owner=None)
    store.add("l", "stale", {"parent": parent, "port": 8080})
    ctx = context(fake(store, "p"), fake(store, "l", ("p",), base=Labelled))
    desired = [res("p", "parent"), res("l", "listener-80", parent=Ref("parent"), port=80)]
    plan = make_plan(ctx, desired, region="r")
    # Port 80 is adopted as is; the cluster's stale listener goes; the user's stays.
    assert [(c.action, c.name) for c in plan.actions] == [("delete", "stale")]


def test_orphans_go_in_reverse_dependency_order() -> None:
    store = Store()
    vpc = store.add("vpc", "net", {})
    subnet = store.add("subnet", "sub", {"vpc": vpc})
    store.add("instance", "box", {"subnet": subnet})
    store.add("vpc", "theirs", {}, owner="someone-else")
    kinds = (
        fake(store, "vpc"),
        fake(store, "subnet", ("vpc",)),
        fake(store, "instance", ("subnet",)),
    )
    ctx = context(*kinds)
    plan = make_plan(ctx, [], region="r")
    assert sorted(c.name for c in plan.actions) == ["box", "net", "sub"]
    run.check(run.apply(ctx, plan))
    assert store.events("delete") == ["box", "sub", "net"]
    assert [i["name"] for i in store.items["vpc"].values()] == ["theirs"]


def test_deletes_wait_out_dependency_violations() -> None:
    store = Store()
    store.add("sg", "group", {})
    ctx = context(fake(store, "sg", blocked_deletes={"group": 3}))
    run.check(run.apply(ctx, make_plan(ctx, [], region="r")))
    assert store.events("delete") == ["group"]


def test_a_delete_blocked_past_the_deadline_fails_cleanly() -> None:
    store = Store()
    store.add("sg", "group", {})
    ctx = context(fake(store, "sg", blocked_deletes={"group": 10_000}), wait_timeout=0.3)
    outcome = run.apply(ctx, make_plan(ctx, [], region="r"))
    assert len(outcome.failures) == 1
    assert "DependencyViolation" in outcome.failures[0][1]
    assert "group" in store.items["sg"].values().__iter__().__next__()["name"]


def test_settle_retries_not_found_right_after_a_create() -> None:
    ctx = context(consistency_timeout=10)
    calls = []

    def attach() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise client_error("InvalidInternetGatewayID.NotFound")
        return "attached"

    assert ctx.settle(attach) == "attached"
    assert len(calls) == 3
    with pytest.raises(botocore.exceptions.ClientError):
        ctx.settle(lambda: (_ for _ in ()).throw(client_error("InvalidParameterValue")))


def test_create_once_adopts_after_a_lost_response() -> None:
    aws = Aws("us-east-1")
    sent = []
    made: list[str] = []

    def create(_client: Any) -> str:
        sent.append(1)
        made.append("vpc-1")  # AWS acted...
        raise botocore.exceptions.ConnectionClosedError(endpoint_url="http://127.0.0.1:9")

    result = create_once(aws, "ec2", create, lambda: made[0] if made else None, timeout=30)
    assert result == "vpc-1"
    assert len(sent) == 1  # ...so it was not sent again


def test_create_once_does_not_retry_a_refusal() -> None:
    aws = Aws("us-east-1")
    sent = []

    def create(_client: Any) -> str:
        sent.append(1)
        raise client_error("VpcLimitExceeded")

    with pytest.raises(botocore.exceptions.ClientError):
        create_once(aws, "ec2", create, lambda: None, timeout=30)
    assert len(sent) == 1


def test_plan_json_is_stable_and_keeps_secrets_out() -> None:
    store = Store()
    secret = "token-abcdef.0123456789abcdef"
    ctx = context(fake(store, "k", sensitive=frozenset({"user_data"})))
    desired = [res("k", "a", user_data=f"#cloud {secret}"), res("k", "b", parent=Ref("a"))]
    first = make_plan(ctx, desired, region="r")
    ctx.forget()
    second = make_plan(ctx, desired, region="r")
    assert json.dumps(first.to_json()) == json.dumps(second.to_json())
    text = json.dumps(first.to_json()) + first.render()
    assert secret not in text
    fields = first.to_json()["changes"][0]["fields"]
    assert fields["user_data"]["after"].startswith("sha256:")
    assert first.to_json()["summary"] == {"create": 2, "update": 0, "replace": 0, "delete": 0}


def test_implied_deletes_are_skipped() -> None:
    class Rule(Fake):
        def deleted_with(self, actual: Actual) -> tuple[str, ...]:
            return (actual.props["group"],)

    store = Store()
    group = store.add("sg", "group", {})
    store.add("rule", "r1", {"group": group})
    store.add("rule", "r2", {"group": group})
    ctx = context(fake(store, "sg"), fake(store, "rule", ("sg",), base=Rule))
    run.check(run.apply(ctx, make_plan(ctx, [], region="r")))
    # Deleting the group takes its rules along: no call per rule.
    assert store.events("delete") == ["group"]


def test_settle_retries_a_waiter_that_met_a_fresh_id_it_does_not_know() -> None:
    ctx = context(consistency_timeout=10)
    calls = []

    def wait() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise botocore.exceptions.WaiterError(
                name="VpcAvailable",
                reason="An error occurred (InvalidVpcID.NotFound)",
                last_response={"Error": {"Code": "InvalidVpcID.NotFound", "Message": "no"}},
            )
        return "available"

    assert ctx.settle(wait) == "available"
    assert len(calls) == 3
    with pytest.raises(botocore.exceptions.WaiterError):
        ctx.settle(
            lambda: (_ for _ in ()).throw(
                botocore.exceptions.WaiterError(
                    name="VpcAvailable", reason="failed", last_response={"Vpcs": []}
                )
            )
        )


def test_create_once_resends_a_throttled_create_without_looking() -> None:
    aws = Aws("us-east-1")
    sent = []
    looked = []

    def create(_client: Any) -> str:
        sent.append(1)
        if len(sent) == 1:
            raise client_error("RequestLimitExceeded")
        return "vpc-1"

    def adopt() -> str | None:
        looked.append(1)
        return None

    assert create_once(aws, "ec2", create, adopt, timeout=30) == "vpc-1"
    assert len(sent) == 2 and not looked
