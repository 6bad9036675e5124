"""An NLB made without a security group (as squall made them before NLBs carried one) cannot
gain one: the plan replaces it and says why, apply deletes its listeners and it, makes the new
one with its group, listeners and records, and a second plan is empty. Read back with boto3.

The emulated AWS names an NLB's DNS name after the load balancer, so here the new NLB keeps
the old DNS name; the test checks that the records are planned to follow and, after apply,
point at the NLB that exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .helpers import Squall, by_cluster, cluster_file, tags

Client = Callable[[str], Any]
NAME = "nlb-old"
HOST_CIDR = "10.70.0.0/16"
API_CIDR = "198.51.100.0/24"


def one(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def group_id(client: Client, role: str) -> str | None:
    got = client("ec2").describe_security_groups(
        Filters=[*by_cluster(NAME), {"Name": "group-name", "Values": [f"{NAME}-{role}"]}]
    )["SecurityGroups"]
    return str(one(got)["GroupId"]) if got else None


def nlb(client: Client) -> dict[str, Any]:
    return one(client("elbv2").describe_load_balancers(Names=[f"{NAME}-nlb"])["LoadBalancers"])


def apiserver_sources(client: Client, group: str) -> set[str]:
    rules = client("ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group]}]
    )["SecurityGroupRules"]
    return {
        r.get("ReferencedGroupInfo", {}).get("GroupId") or r.get("CidrIpv4") or r["CidrIpv6"]
        for r in rules
        if not r["IsEgress"] and r["IpProtocol"] == "tcp" and r["FromPort"] == 6443
    }


def make_it_old(client: Client) -> str:
    """Turn the applied cluster into one an older squall left: the same NLB and listeners
    but no security group on the NLB, no NAME-nlb group, 6443 from the VPC on the
    controllers. Adds a listener of someone else's. Returns the old NLB's ARN."""
    ec2, elb = client("ec2"), client("elbv2")
    lb = nlb(client)
    arn = lb["LoadBalancerArn"]
    listeners = elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]
    listener_tags = {
        d["ResourceArn"]: d["Tags"]
        for d in elb.describe_tags(ResourceArns=[x["ListenerArn"] for x in listeners])[
            "TagDescriptions"
        ]
    }
    lb_tags = one(elb.describe_tags(ResourceArns=[arn])["TagDescriptions"])["Tags"]
    controller, old_group = group_id(client, "controller"), group_id(client, "nlb")
    assert controller and old_group
    for role in ("controller", "worker"):
        rules = ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [group_id(client, role)]}]
        )["SecurityGroupRules"]
        refs = [
            r["SecurityGroupRuleId"]
            for r in rules
            if r.get("ReferencedGroupInfo", {}).get("GroupId") == old_group
        ]
        if refs:
            ec2.revoke_security_group_ingress(
                GroupId=group_id(client, role), SecurityGroupRuleIds=refs
            )
    elb.delete_load_balancer(LoadBalancerArn=arn)
    ec2.delete_security_group(GroupId=old_group)

    made = one(
        elb.create_load_balancer(
            Name=f"{NAME}-nlb",
            Subnets=[z["SubnetId"] for z in lb["AvailabilityZones"]],
            Scheme="internet-facing",
            Type="network",
            IpAddressType="dualstack",
            Tags=lb_tags,
        )["LoadBalancers"]
    )
    old = made["LoadBalancerArn"]
    assert not made.get("SecurityGroups")
    elb.modify_load_balancer_attributes(
        LoadBalancerArn=old,
        Attributes=[{"Key": "load_balancing.cross_zone.enabled", "Value": "true"}],
    )
    for x in listeners:
        elb.create_listener(
            LoadBalancerArn=old,
            Port=x["Port"],
            Protocol=x["Protocol"],
            DefaultActions=x["DefaultActions"],
            Tags=listener_tags[x["ListenerArn"]],
        )
    http = one(elb.describe_target_groups(Names=[f"{NAME}-workers-http"])["TargetGroups"])
    elb.create_listener(
        LoadBalancerArn=old,
        Port=8080,
        Protocol="TCP",
        DefaultActions=[{"Type": "forward", "TargetGroupArn": http["TargetGroupArn"]}],
    )
    rule_tags = [
        {"Key": "Name", "Value": f"{NAME}-controller-apiserver-nlb-{HOST_CIDR}"},
        {"Key": "squall.dev/cluster", "Value": NAME},
    ]
    ec2.authorize_security_group_ingress(
        GroupId=controller,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 6443,
                "ToPort": 6443,
                "IpRanges": [{"CidrIp": HOST_CIDR}],
            }
        ],
        TagSpecifications=[{"ResourceType": "security-group-rule", "Tags": rule_tags}],
    )
    return str(old)


def test_nlb_without_security_group_is_replaced(
    squall: Squall, client: Client, tmp_path: Path
) -> None:
    ec2, elb = client("ec2"), client("elbv2")
    config = cluster_file(
        tmp_path, NAME, host_cidr=HOST_CIDR, worker_count=1, apiserver_cidrs=[API_CIDR]
    )
    squall("apply", str(config), "--yes", "--no-bootstrap")
    old = make_it_old(client)
    assert group_id(client, "nlb") is None
    assert apiserver_sources(client, str(group_id(client, "controller"))) == {API_CIDR, HOST_CIDR}

    plan = squall.plan_json(config)
    changes = {(c["kind"], c["name"]): c for c in plan["changes"]}
    lb = changes[("load_balancer", f"{NAME}-nlb")]
    assert (lb["action"], lb["id"]) == ("replace", old)
    assert lb["forces_replacement"] == ["created_with_security_groups"]
    assert lb["fields"]["created_with_security_groups"] == {"before": False, "after": True}
    # The listeners go with the old NLB and come back on the new one.
    listeners = sorted(c["action"] for c in plan["changes"] if c["kind"] == "listener")
    assert listeners == ["create"] * 3 + ["delete"] * 3
    # The apiserver records follow the new NLB's DNS name.
    for type_ in ("A", "AAAA"):
        record = next(
            c for c in plan["changes"] if c["kind"] == "record" and c["name"].endswith(type_)
        )
        assert record["action"] == "update"
        assert record["fields"]["alias"]["after"]["dns_name"] == "(known after apply)"
    assert changes[("security_group", f"{NAME}-nlb")]["action"] == "create"
    old_rule = changes[("security_group_rule", f"{NAME}-controller-apiserver-nlb-{HOST_CIDR}")]
    assert old_rule["action"] == "delete"

    shown = squall("plan", str(config))
    assert f"-/+ load_balancer {NAME}-nlb ({old})" in shown.stdout
    assert "(created_with_security_groups forces replacement)" in shown.stdout
    warning = " ".join(shown.stderr.split())
    assert "made without a security group" in warning
    assert "ingress_dns_name" in warning
    assert f"{NAME}-nlb:8080" in warning

    squall("apply", str(config), "--yes", "--no-bootstrap")
    new = nlb(client)
    assert new["LoadBalancerArn"] != old
    nlb_group = group_id(client, "nlb")
    assert new["SecurityGroups"] == [nlb_group]
    assert (
        tags(one(elb.describe_tags(ResourceArns=[new["LoadBalancerArn"]])["TagDescriptions"]))[
            "squall.dev/cluster"
        ]
        == NAME
    )
    forwards = {
        x["Port"]: one(x["DefaultActions"])["TargetGroupArn"]
        for x in elb.describe_listeners(LoadBalancerArn=new["LoadBalancerArn"])["Listeners"]
    }
    names = {
        port: one(elb.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"])[
            "TargetGroupName"
        ]
        for port, arn in forwards.items()
    }
    # Someone else's listener went with the old NLB, as the warning said.
    assert names == {
        6443: f"{NAME}-controllers",
        80: f"{NAME}-workers-http",
        443: f"{NAME}-workers-https",
    }
    sets = client("route53").list_resource_record_sets(HostedZoneId="Z3PAABBCFAKEC0")
    api = [s for s in sets["ResourceRecordSets"] if s["Name"] == f"{NAME}.aws.example.com."]
    assert sorted(s["Type"] for s in api) == ["A", "AAAA"]
    assert all(s["AliasTarget"]["DNSName"].rstrip(".") == new["DNSName"] for s in api)
    # Through the NLB only via its group; directly only from apiserver_cidrs.
    controller = str(group_id(client, "controller"))
    assert apiserver_sources(client, controller) == {API_CIDR, nlb_group}
    controllers_tg = one(elb.describe_target_groups(Names=[f"{NAME}-controllers"])["TargetGroups"])
    health = elb.describe_target_health(TargetGroupArn=controllers_tg["TargetGroupArn"])
    assert len(health["TargetHealthDescriptions"]) == 1
    assert squall.plan_json(config)["changes"] == []

    # The NLB's group sends only into the VPC: an allow-all outbound rule is taken out again.
    ec2.authorize_security_group_egress(
        GroupId=nlb_group,
        IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    again = squall.plan_json(config)["changes"]
    assert [(c["action"], c["kind"], c["fields"]) for c in again] == [
        ("update", "security_group", {"default_egress": {"before": True, "after": False}})
    ]
    squall("apply", str(config), "--yes", "--no-bootstrap")
    egress = [
        r.get("CidrIpv4") or r.get("CidrIpv6")
        for r in ec2.describe_security_group_rules(
            Filters=[{"Name": "group-id", "Values": [nlb_group]}]
        )["SecurityGroupRules"]
        if r["IsEgress"]
    ]
    assert egress == [HOST_CIDR]
    assert squall.plan_json(config)["changes"] == []

    squall("destroy", str(config), "--yes")
    assert ec2.describe_security_groups(Filters=by_cluster(NAME))["SecurityGroups"] == []
    left = elb.describe_load_balancers()["LoadBalancers"]
    assert not [x for x in left if x["LoadBalancerName"] == f"{NAME}-nlb"]
