"""Reads one controller back from the emulated AWS with plain boto3, for the end-to-end test.

Runs inside the test's namespaces (the emulated AWS listens on their loopback) and prints JSON:
the instance id, its public IPv4 address and its user data, i.e. exactly what a real instance
would boot from and be reached at.

    python readback.py CLUSTER_NAME INDEX
"""

from __future__ import annotations

import base64
import json
import sys

import boto3


def main() -> None:
    cluster, index = sys.argv[1], int(sys.argv[2])
    ec2 = boto3.client("ec2")
    reply = ec2.describe_instances(
        Filters=[
            {"Name": "tag:squall.dev/cluster", "Values": [cluster]},
            {"Name": "tag:Name", "Values": [f"{cluster}-controller-{index}"]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    instances = [i for r in reply["Reservations"] for i in r["Instances"]]
    if len(instances) != 1:
        sys.exit(f"expected one controller-{index} of {cluster}, found {len(instances)}")
    instance = instances[0]
    user_data = ec2.describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="userData"
    )["UserData"]["Value"]
    json.dump(
        {
            "instance_id": instance["InstanceId"],
            "public_ip": instance.get("PublicIpAddress"),
            "user_data": base64.b64decode(user_data).decode(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
