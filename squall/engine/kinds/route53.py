"""The Route53 record kind.

Records carry no tags. The kind is made for one hosted zone and told which names it owns, so
discovery reads the zone once and keeps only those names, and nothing else in the zone is ever
touched.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import botocore.exceptions

from squall.engine.aws import code, message
from squall.engine.core import Actual, Context, Kind


def fqdn(name: str) -> str:
    """Route53 spelling: lower case with the trailing dot."""
    return name.lower().rstrip(".") + "."


def r53(ctx: Context) -> Any:
    return ctx.aws.client("route53")


class Record(Kind):
    kind = "record"
    depends_on = ("load_balancer", "instance")
    immutable = frozenset({"zone", "name", "type"})
    unordered = frozenset({"values"})

    def __init__(self, zone_id: str, owns: Callable[[str, str], bool]) -> None:
        self.zone_id = zone_id
        self.owns = owns

    def discover(self, ctx: Context) -> list[Actual]:
        try:
            sets = ctx.aws.pages(
                "route53",
                "list_resource_record_sets",
                "ResourceRecordSets",
                HostedZoneId=self.zone_id,
            )
        except botocore.exceptions.ClientError as err:
            # A zone deleted first holds no records to delete; creating them says so clearly.
            if code(err) == "NoSuchHostedZone":
                return []
            raise
        out = []
        for rs in sets:
            name, type_ = fqdn(rs["Name"]), rs["Type"]
            if not self.owns(name, type_) or rs.get("SetIdentifier"):
                continue
            props: dict[str, Any] = {"zone": self.zone_id, "name": name, "type": type_}
            alias = rs.get("AliasTarget")
            if alias:
                props["alias"] = {
                    "dns_name": fqdn(alias["DNSName"]),
                    "zone_id": alias["HostedZoneId"],
                    "evaluate_target_health": bool(alias.get("EvaluateTargetHealth")),
                }
            else:
                props["ttl"] = rs.get("TTL")
                props["values"] = sorted(r["Value"] for r in rs.get("ResourceRecords", []))
            out.append(
                Actual(
                    self.kind,
                    f"{self.zone_id}:{name}:{type_}",
                    f"{name.rstrip('.')} {type_}",
                    props,
                    {"record": rs},
                    ident=(name, type_),
                )
            )
        return out

    def identity(self, name: str, props: dict[str, Any]) -> Hashable | None:
        return (fqdn(props["name"]), props["type"])

    def _record_set(self, props: dict[str, Any]) -> dict[str, Any]:
        rs: dict[str, Any] = {"Name": fqdn(props["name"]), "Type": props["type"]}
        if props.get("alias"):
            a = props["alias"]
            rs["AliasTarget"] = {
                "HostedZoneId": a["zone_id"],
                "DNSName": a["dns_name"],
                "EvaluateTargetHealth": bool(a["evaluate_target_health"]),
            }
        else:
            rs["TTL"] = int(props["ttl"])
            rs["ResourceRecords"] = [{"Value": v} for v in props["values"]]
        return rs

    def _upsert(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        rs = self._record_set(props)
        # UPSERT makes the call idempotent; Route53 applies it within about a minute and
        # nothing in this run reads the name back, so the change is not waited for.
        r53(ctx).change_resource_record_sets(
            HostedZoneId=self.zone_id,
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": rs}]},
        )
        clean = dict(props)
        clean["name"] = fqdn(props["name"])
        if clean.get("alias"):
            clean["alias"] = {**clean["alias"], "dns_name": fqdn(clean["alias"]["dns_name"])}
        return Actual(
            self.kind,
            f"{self.zone_id}:{rs['Name']}:{rs['Type']}",
            name,
            clean,
            {"record": rs},
            ident=(rs["Name"], rs["Type"]),
        )

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        return self._upsert(ctx, name, props)

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        return self._upsert(ctx, name, props)

    def delete(self, ctx: Context, actual: Actual) -> None:
        try:
            r53(ctx).change_resource_record_sets(
                HostedZoneId=self.zone_id,
                ChangeBatch={
                    "Changes": [{"Action": "DELETE", "ResourceRecordSet": actual.attrs["record"]}]
                },
            )
        except botocore.exceptions.ClientError as err:
            # Already gone (a resent delete, or someone else removed it).
            if code(err) != "InvalidChangeBatch" or "not found" not in message(err).lower():
                raise

    def same(self, prop: str, desired: Any, observed: Any) -> bool:
        if prop == "name":
            return fqdn(desired) == fqdn(observed)
        if prop == "alias" and isinstance(desired, dict) and isinstance(observed, dict):
            return {**desired, "dns_name": fqdn(desired["dns_name"])} == observed
        return super().same(prop, desired, observed)
