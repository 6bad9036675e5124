"""The auto scaling group kind."""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from squall.engine.aws import code, create_once, explain, message, wait_for
from squall.engine.core import OWNER_TAG, Actual, Context, Kind
from squall.engine.kinds.ec2 import ASG_TAG, LIVE_STATES


def asg(ctx: Context) -> Any:
    return ctx.aws.client("autoscaling")


class AutoScalingGroup(Kind):
    """An auto scaling group of instances from a launch template version.

    When the version changes, the group starts a rolling instance refresh so that running
    instances are replaced by ones from the new template, a few at a time.
    """

    kind = "auto_scaling_group"
    depends_on = ("launch_template", "subnet", "target_group", "internet_gateway")
    unordered = frozenset({"subnets", "target_groups"})
    create_only = frozenset({"refresh_warmup", "refresh_min_healthy"})

    def discover(self, ctx: Context) -> list[Actual]:
        groups = ctx.aws.pages(
            "autoscaling",
            "describe_auto_scaling_groups",
            "AutoScalingGroups",
            Filters=[{"Name": f"tag:{OWNER_TAG}", "Values": [ctx.cluster]}],
        )
        # A group being deleted is on its way out; it is no one's to adopt.
        return [self._actual(g) for g in groups if not g.get("Status")]

    def _actual(self, g: dict[str, Any]) -> Actual:
        lt = g.get("LaunchTemplate", {})
        subnets = [s for s in g.get("VPCZoneIdentifier", "").split(",") if s]
        props = {
            "launch_template": lt.get("LaunchTemplateId"),
            "launch_template_version": lt.get("Version"),
            "min_size": g["MinSize"],
            "max_size": g["MaxSize"],
            "desired_capacity": g["DesiredCapacity"],
            "subnets": sorted(subnets),
            "target_groups": sorted(g.get("TargetGroupARNs", [])),
            "health_check_type": g.get("HealthCheckType"),
            "health_check_grace": g.get("HealthCheckGracePeriod"),
            "cooldown": g.get("DefaultCooldown"),
        }
        name = g["AutoScalingGroupName"]
        return Actual(self.kind, name, name, props, {"arn": g.get("AutoScalingGroupARN")})

    def _args(self, props: dict[str, Any]) -> dict[str, Any]:
        return {
            "LaunchTemplate": {
                "LaunchTemplateId": props["launch_template"],
                "Version": str(props["launch_template_version"]),
            },
            "MinSize": int(props["min_size"]),
            "MaxSize": int(props["max_size"]),
            "DesiredCapacity": int(props["desired_capacity"]),
            "VPCZoneIdentifier": ",".join(props["subnets"]),
            "HealthCheckType": props["health_check_type"],
            "HealthCheckGracePeriod": int(props["health_check_grace"]),
            "DefaultCooldown": int(props["cooldown"]),
        }

    def create(self, ctx: Context, name: str, props: dict[str, Any]) -> Actual:
        tags = [
            {
                "ResourceId": name,
                "ResourceType": "auto-scaling-group",
                "Key": t["Key"],
                "Value": t["Value"],
                "PropagateAtLaunch": True,
            }
            for t in ctx.tags(name)
        ]

        def find() -> Actual | None:
            got = asg(ctx).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
            groups = [g for g in got["AutoScalingGroups"] if not g.get("Status")]
            return self._actual(groups[0]) if groups else None

        try:
            # No idempotency token, and a resend must not reach an endpoint that replaces
            # the group (moto does, orphaning its instances): look before sending again.
            made = create_once(
                ctx.aws,
                "autoscaling",
                lambda c: ctx.settle(
                    lambda: c.create_auto_scaling_group(
                        AutoScalingGroupName=name,
                        TargetGroupARNs=list(props["target_groups"]),
                        Tags=tags,
                        **self._args(props),
                    )
                ),
                find,
                timeout=ctx.consistency_timeout,
            )
        except botocore.exceptions.ClientError as err:
            # Made by a call whose response was lost and that a look-up did not see yet.
            if code(err) != "AlreadyExists":
                raise
            made = None
        if isinstance(made, Actual) or made is None:
            # Adopted rather than made by this call: align it with what is wanted.
            actual = self._read(ctx, name)
            return self.update(ctx, name, props, actual, {"target_groups"})
        return self._read(ctx, name)

    def _read(self, ctx: Context, name: str) -> Actual:
        got = asg(ctx).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return self._actual(got["AutoScalingGroups"][0])

    def update(
        self, ctx: Context, name: str, props: dict[str, Any], actual: Actual, changed: set[str]
    ) -> Actual:
        c = asg(ctx)
        c.update_auto_scaling_group(AutoScalingGroupName=name, **self._args(props))
        if "target_groups" in changed:
            have = set(actual.props.get("target_groups") or [])
            want = set(props["target_groups"])
            if want - have:
                c.attach_load_balancer_target_groups(
                    AutoScalingGroupName=name, TargetGroupARNs=sorted(want - have)
                )
            if have - want:
                c.detach_load_balancer_target_groups(
                    AutoScalingGroupName=name, TargetGroupARNs=sorted(have - want)
                )
        if changed & {"launch_template", "launch_template_version"}:
            self._refresh(ctx, name, props)
        return self._read(ctx, name)

    def _refresh(self, ctx: Context, name: str, props: dict[str, Any]) -> None:
        # Not worth many retries: when AWS declines (a refresh already running, or an API
        # the endpoint lacks: moto has no StartInstanceRefresh), the group still launches
        # new instances from the new version.
        client = ctx.aws.client("autoscaling", max_attempts=2)
        try:
            client.start_instance_refresh(
                AutoScalingGroupName=name,
                Strategy="Rolling",
                Preferences={
                    "InstanceWarmup": int(props["refresh_warmup"]),
                    "MinHealthyPercentage": int(props["refresh_min_healthy"]),
                },
            )
        except Exception as err:
            ctx.warn(
                f"{explain(err, f'starting an instance refresh of {name}')}; "
                "running workers keep the old template until replaced"
            )

    def delete(self, ctx: Context, actual: Actual) -> None:
        # Force-delete terminates the instances; then wait for the group and its instances
        # to be gone, since subnets and security groups cannot go while they run.
        try:
            asg(ctx).delete_auto_scaling_group(AutoScalingGroupName=actual.id, ForceDelete=True)
        except botocore.exceptions.ClientError as err:
            # Gone already (e.g. a resent delete); still wait for its instances below.
            if "not found" not in message(err).lower():
                raise

        def group_gone() -> bool | None:
            got = asg(ctx).describe_auto_scaling_groups(AutoScalingGroupNames=[actual.id])
            return True if not got["AutoScalingGroups"] else None

        def instances_gone() -> bool | None:
            left = ctx.aws.pages(
                "ec2",
                "describe_instances",
                "Reservations",
                Filters=[
                    {"Name": f"tag:{ASG_TAG}", "Values": [actual.id]},
                    {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]},
                ],
            )
            return True if not any(r["Instances"] for r in left) else None

        wait_for(group_gone, what=f"auto scaling group {actual.id} to go", timeout=ctx.wait_timeout)
        wait_for(
            instances_gone,
            what=f"the instances of {actual.id} to terminate",
            timeout=ctx.wait_timeout,
            interval=3.0,
        )
