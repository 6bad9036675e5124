"""The cluster manifests: valid Kubernetes v1.36 objects that fit the spec and each other."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from squall.assets.token import BootstrapToken

Obj = dict[str, Any]
Manifests = dict[str, list[Obj]]
Render = Callable[..., Manifests]

K8S_SCHEMA = "1.36.0"
API_HOST = "tempest.aws.example.com"  # the cluster_data fixture's NAME.ZONE
NODE_DAEMONSETS = {"cilium", "flannel", "kube-proxy"}

# Every shape of the add-on set a user can ask for.
CASES: dict[str, dict[str, Any]] = {
    "cilium": {},
    "cilium-no-ingress": {"ingress_controller": "none"},
    "cilium-bare": {
        "ingress_controller": "none",
        "components": {"coredns": False, "cilium": False},
    },
    "flannel": {"networking": "flannel"},
    "flannel-no-ingress": {"networking": "flannel", "ingress_controller": "none"},
    "flannel-no-kube-proxy-no-dns": {
        "networking": "flannel",
        "components": {"kube_proxy": False, "coredns": False},
    },
    "flannel-bare": {
        "networking": "flannel",
        "ingress_controller": "none",
        "components": {"coredns": False, "kube_proxy": False, "flannel": False},
    },
    "everything-customized": {
        "networking": "flannel",
        "service_cidr": "172.16.0.0/20",
        "pod_cidr": "10.100.0.0/16",
        "cloud_provider": "external",
        "daemonset_tolerations": ["gpu-role", "example.com/storage"],
        "worker_node_taints": ["dedicated=infra:NoSchedule"],
    },
}


def objects(manifests: Manifests) -> Iterator[Obj]:
    for objs in manifests.values():
        yield from objs


def find(manifests: Manifests, kind: str, name: str) -> Obj:
    hits = [o for o in objects(manifests) if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def workloads(manifests: Manifests) -> list[Obj]:
    return [o for o in objects(manifests) if o["kind"] in ("DaemonSet", "Deployment")]


def pod_spec(obj: Obj) -> Obj:
    return obj["spec"]["template"]["spec"]


def containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: Obj) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def toleration_keys(obj: Obj) -> set[str]:
    return {t["key"] for t in pod_spec(obj).get("tolerations", []) if "key" in t}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, render: Render) -> Manifests:
    return render(**CASES[request.param])


# Validity and self-consistency, for every shape.


def test_every_object_passes_strict_schema_validation(case: Manifests) -> None:
    for path, objs in case.items():
        assert objs, f"{path} is empty"
        for obj in objs:
            try:
                kubernetes_validate.validate(obj, K8S_SCHEMA, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{path}: {obj['kind']}/{obj['metadata']['name']}: {err.message}")


def test_objects_are_plain_data_that_survives_yaml(case: Manifests) -> None:
    for path, objs in case.items():
        text = yaml.safe_dump_all(objs, sort_keys=False)
        assert list(yaml.safe_load_all(text)) == objs, path
        # A sub-object shared between two places would come out as an anchor and alias,
        # which readers of the files should never have to untangle.
        aliases = [e for e in yaml.parse(text) if isinstance(e, yaml.AliasEvent)]
        assert not aliases, f"{path}: {len(aliases)} YAML aliases"


def test_paths_are_relative_yaml_files(case: Manifests) -> None:
    for path in case:
        assert path.endswith(".yaml") and not path.startswith("/") and ".." not in path


def test_no_two_objects_share_a_name(case: Manifests) -> None:
    seen: dict[tuple[str, str, str], str] = {}
    for path, objs in case.items():
        for obj in objs:
            key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            assert key not in seen, f"{key} is in {seen.get(key)} and {path}"
            seen[key] = path


def test_namespaced_references_resolve_within_the_manifests(case: Manifests) -> None:
    """Service accounts, ConfigMaps, namespaces and roles that pods and bindings name exist."""
    present = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
        for o in objects(case)
    }
    namespaces = {"kube-system"} | {n for k, _, n in present if k == "Namespace"}
    for obj in objects(case):
        ns = obj["metadata"].get("namespace")
        if ns is not None:
            assert ns in namespaces, f"{obj['kind']}/{obj['metadata']['name']} in missing {ns}"
    for obj in workloads(case):
        ns = obj["metadata"]["namespace"]
        spec = pod_spec(obj)
        assert ("ServiceAccount", ns, spec["serviceAccountName"]) in present
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                assert ("ConfigMap", ns, vol["configMap"]["name"]) in present
        for c in containers(obj):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref and not ref.get("optional"):
                    assert ("ConfigMap", ns, ref["name"]) in present
            names = {v["name"] for v in spec.get("volumes", [])}
            for m in c.get("volumeMounts", []):
                assert m["name"] in names, f"{c['name']} mounts unknown volume {m['name']}"
    for obj in objects(case):
        if obj["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            ref = obj["roleRef"]
            if not ref["name"].startswith("system:"):
                ns = obj["metadata"].get("namespace", "")
                assert (ref["kind"], ns, ref["name"]) in present, ref
            for subject in obj["subjects"]:
                if subject["kind"] == "ServiceAccount":
                    assert (
                        "ServiceAccount",
                        subject["namespace"],
                        subject["name"],
                    ) in present


def test_selectors_match_their_pod_templates(case: Manifests) -> None:
    for obj in workloads(case):
        selector = obj["spec"]["selector"]["matchLabels"]
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), obj["metadata"]["name"]


def test_images_are_pinned_to_a_release(case: Manifests) -> None:
    for obj in workloads(case):
        for c in containers(obj):
            repo, _, tag = c["image"].rpartition(":")
            assert repo and "/" in repo and tag.startswith("v") and tag != "latest", c["image"]


def test_rendering_is_deterministic(render: Render) -> None:
    first = json.dumps(render(networking="flannel"))
    assert json.dumps(render(networking="flannel")) == first
    assert json.dumps(render()) == json.dumps(render())


# Bootstrap token and node RBAC.


def test_token_secret_matches_the_token(render: Render, token: BootstrapToken) -> None:
    m = render()
    secret = find(m, "Secret", f"bootstrap-token-{token.id}")
    assert m["bootstrap/token.yaml"] == [secret]
    assert secret["metadata"]["namespace"] == "kube-system"
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = secret["stringData"]
    assert f"{data['token-id']}.{data['token-secret']}" == token.value
    assert data["usage-bootstrap-authentication"] == "true"


def test_bootstrappers_may_request_and_get_node_certificates(render: Render) -> None:
    bindings = {
        (o["roleRef"]["name"], s["kind"], s["name"])
        for o in render()["bootstrap/rbac.yaml"]
        if o["kind"] == "ClusterRoleBinding"
        for s in o["subjects"]
    }
    prefix = "system:certificates.k8s.io:certificatesigningrequests"
    assert ("system:node-bootstrapper", "Group", "system:bootstrappers") in bindings
    assert (f"{prefix}:nodeclient", "Group", "system:bootstrappers") in bindings
    assert (f"{prefix}:selfnodeclient", "Group", "system:nodes") in bindings


def test_apiserver_may_reach_the_kubelet_api(render: Render) -> None:
    m = render()
    binding = next(
        o
        for o in m["bootstrap/rbac.yaml"]
        if o["kind"] == "ClusterRoleBinding"
        and {"kind": "User", "name": "kube-apiserver", "apiGroup": "rbac.authorization.k8s.io"}
        in o["subjects"]
    )
    role = find(m, "ClusterRole", binding["roleRef"]["name"])
    granted = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"nodes/proxy", "nodes/stats", "nodes/log", "nodes/spec", "nodes/metrics"} <= granted


# CoreDNS.


def test_cluster_dns_is_the_tenth_service_ip(render: Render) -> None:
    cidr = "172.16.0.0/20"
    service = find(render(service_cidr=cidr), "Service", "kube-dns")
    assert service["spec"]["clusterIP"] == str(ipaddress.ip_network(cidr)[10]) == "172.16.0.10"
    assert {(p["port"], p["protocol"]) for p in service["spec"]["ports"]} >= {
        (53, "UDP"),
        (53, "TCP"),
    }
    default = find(render(), "Service", "kube-dns")
    assert default["spec"]["clusterIP"] == "10.3.0.10"


def test_coredns_serves_the_cluster_domain_and_forwards_the_rest(render: Render) -> None:
    m = render()
    corefile = find(m, "ConfigMap", "coredns")["data"]["Corefile"]
    lines = [line.strip() for line in corefile.splitlines()]
    assert corefile.count("{") == corefile.count("}")
    assert any(line.startswith("kubernetes cluster.local ") for line in lines)
    for directive in ("forward . /etc/resolv.conf", "cache 30", "loop", "reload", "ready"):
        assert directive in lines
    assert "prometheus :9153" in lines
    deployment = find(m, "Deployment", "coredns")
    assert deployment["spec"]["replicas"] == 2
    assert "node-role.kubernetes.io/controller" in toleration_keys(deployment)
    assert "podAntiAffinity" in pod_spec(deployment)["affinity"]


def test_coredns_can_be_turned_off(render: Render) -> None:
    m = render(components={"coredns": False})
    assert not any(p.startswith("coredns/") for p in m)
    assert not [o for o in objects(m) if o["metadata"]["name"] == "kube-dns"]


# Networking: Cilium or flannel + kube-proxy.


def test_cilium_replaces_kube_proxy(render: Render) -> None:
    m = render()
    names = {o["metadata"]["name"] for o in objects(m)}
    assert "kube-proxy" not in names
    assert not [c for o in workloads(m) for c in containers(o) if "kube-proxy" in c["image"]]
    assert find(m, "ConfigMap", "cilium-config")["data"]["kube-proxy-replacement"] == "true"
    assert not any("flannel" in p for p in m)


def test_cilium_config_follows_the_spec_and_the_firewall(render: Render) -> None:
    config = find(render(pod_cidr="10.64.0.0/12"), "ConfigMap", "cilium-config")["data"]
    assert config["cluster-pool-ipv4-cidr"] == "10.64.0.0/12"
    assert config["ipam"] == "cluster-pool"
    assert config["routing-mode"] == "tunnel"
    assert config["tunnel-protocol"] == "vxlan"
    assert config["tunnel-port"] == "8472"
    assert config["cluster-health-port"] == "4240"
    metrics = {
        config["prometheus-serve-addr"],
        config["operator-prometheus-serve-addr"],
        f":{config['proxy-prometheus-port']}",
        config["hubble-metrics-server"],
    }
    assert metrics == {":9962", ":9963", ":9964", ":9965"}
    assert all(isinstance(v, str) for v in config.values())


def test_cilium_reaches_the_apiserver_without_kube_proxy(render: Render) -> None:
    m = render()
    for obj in (find(m, "DaemonSet", "cilium"), find(m, "Deployment", "cilium-operator")):
        main = pod_spec(obj)["containers"][0]
        assert env_of(main)["KUBERNETES_SERVICE_HOST"] == API_HOST
        assert env_of(main)["KUBERNETES_SERVICE_PORT"] == "6443"
        assert pod_spec(obj)["hostNetwork"] is True


def test_cilium_can_be_turned_off(render: Render) -> None:
    m = render(components={"cilium": False})
    assert not any(p.startswith("network/") for p in m)
    assert "coredns/deployment.yaml" in m


def test_flannel_brings_kube_proxy_with_the_pod_cidr(render: Render) -> None:
    m = render(networking="flannel", pod_cidr="10.100.0.0/16")
    assert not [o for o in objects(m) if o["metadata"]["name"].startswith("cilium")]
    config = json.loads(find(m, "ConfigMap", "kube-proxy-config")["data"]["config.json"])
    assert config["kind"] == "KubeProxyConfiguration"
    assert config["clusterCIDR"] == "10.100.0.0/16"
    assert config["metricsBindAddress"].endswith(":10249")
    net_conf = json.loads(find(m, "ConfigMap", "flannel-config")["data"]["net-conf.json"])
    assert net_conf["Network"] == "10.100.0.0/16"
    assert net_conf["Backend"] == {"Type": "vxlan", "Port": 8472}
    cni = json.loads(find(m, "ConfigMap", "flannel-config")["data"]["cni-conf.json"])
    assert [p["type"] for p in cni["plugins"]] == ["flannel", "portmap"]


def test_kube_proxy_kubeconfig_is_read_by_kubectl(render: Render, tmp_path: Path) -> None:
    m = render(networking="flannel")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(find(m, "ConfigMap", "kube-proxy-kubeconfig")["data"]["kubeconfig"])
    result = subprocess.run(
        [
            "kubectl",
            f"--kubeconfig={kubeconfig}",
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server} {.users[0].user.tokenFile}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    server, token_file = result.stdout.split()
    assert server == f"https://{API_HOST}:6443"
    assert token_file == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    # kube-proxy mounts the ConfigMap where its KubeProxyConfiguration looks for it.
    config = json.loads(find(m, "ConfigMap", "kube-proxy-config")["data"]["config.json"])
    daemonset = find(m, "DaemonSet", "kube-proxy")
    mounts = {
        mount["name"]: mount["mountPath"] for mount in containers(daemonset)[0]["volumeMounts"]
    }
    assert config["clientConnection"]["kubeconfig"] == f"{mounts['kubeconfig']}/kubeconfig"


@pytest.mark.parametrize(
    ("components", "absent"),
    [
        ({"kube_proxy": False}, "kube-proxy"),
        ({"flannel": False}, "flannel"),
    ],
)
def test_flannel_components_can_be_turned_off(
    render: Render, components: dict[str, bool], absent: str
) -> None:
    m = render(networking="flannel", components=components)
    names = {o["metadata"]["name"] for o in objects(m) if o["kind"] == "DaemonSet"}
    assert absent not in names
    assert names == {"kube-proxy", "flannel", "nginx-ingress-controller"} - {absent}


# Tolerations.


def test_extra_tolerations_reach_every_kube_system_daemonset(render: Render) -> None:
    extra = ["gpu-role", "example.com/storage"]
    for networking in ("cilium", "flannel"):
        m = render(networking=networking, daemonset_tolerations=extra)
        daemonsets = [
            o
            for o in objects(m)
            if o["kind"] == "DaemonSet" and o["metadata"]["namespace"] == "kube-system"
        ]
        assert {d["metadata"]["name"] for d in daemonsets} <= NODE_DAEMONSETS
        assert daemonsets
        for daemonset in daemonsets:
            tolerations = pod_spec(daemonset)["tolerations"]
            for key in extra:
                assert {"key": key, "operator": "Exists"} in tolerations
            assert "node-role.kubernetes.io/controller" in toleration_keys(daemonset)


def test_worker_taints_do_not_keep_the_network_off_workers(render: Render) -> None:
    m = render(
        networking="flannel",
        worker_node_taints=["dedicated=infra:NoSchedule"],
        worker_pools=[{"name": "gpu", "node_taints": ["nvidia.com/gpu:NoExecute"]}],
    )
    for name in ("flannel", "kube-proxy"):
        keys = toleration_keys(find(m, "DaemonSet", name))
        assert {"dedicated", "nvidia.com/gpu"} <= keys


def test_external_cloud_provider_taint_is_tolerated_where_it_matters(render: Render) -> None:
    taint = "node.cloudprovider.kubernetes.io/uninitialized"
    m = render(cloud_provider="external")
    for kind, name in (
        ("DaemonSet", "cilium"),
        ("Deployment", "cilium-operator"),
        ("Deployment", "coredns"),
    ):
        assert taint in toleration_keys(find(m, kind, name))
    assert taint not in toleration_keys(find(render(), "DaemonSet", "cilium"))


# Ingress.


def test_nginx_ingress_serves_the_nlb_on_workers(render: Render) -> None:
    m = render()
    daemonset = find(m, "DaemonSet", "nginx-ingress-controller")
    spec = pod_spec(daemonset)
    # The label the node configs give the NLB's ingress workers, and only them.
    assert spec["nodeSelector"] == {"squall.dev/ingress": "true"}
    assert spec["hostNetwork"] is True
    assert "node-role.kubernetes.io/controller" not in toleration_keys(daemonset)
    controller = spec["containers"][0]
    assert {p["containerPort"] for p in controller["ports"]} == {80, 443, 10254}
    for probe in ("livenessProbe", "readinessProbe"):
        assert controller[probe]["httpGet"] == {"path": "/healthz", "port": 10254, "scheme": "HTTP"}
    ingress_class = find(m, "IngressClass", "nginx")
    assert ingress_class["metadata"]["annotations"] == {
        "ingressclass.kubernetes.io/is-default-class": "true"
    }
    controller_class = ingress_class["spec"]["controller"]
    assert f"--controller-class={controller_class}" in controller["args"]
    # The namespace file sorts first, so a plain recursive apply creates it before its contents.
    ingress_paths = sorted(p for p in m if p.startswith("ingress/"))
    assert [o["kind"] for o in m[ingress_paths[0]]] == ["Namespace"]


def test_ingress_can_be_left_out(render: Render) -> None:
    m = render(ingress_controller="none")
    assert not any(p.startswith("ingress/") for p in m)
    assert not [o for o in objects(m) if o["kind"] == "IngressClass"]


def test_kube_proxy_matches_the_control_plane_release(render: Render) -> None:
    from squall.assets import versions

    daemonset = find(render(networking="flannel"), "DaemonSet", "kube-proxy")
    image = containers(daemonset)[0]["image"]
    assert image.rpartition(":")[2] == versions.KUBERNETES_VERSION


def test_ingress_controller_tolerates_the_taints_of_ingress_workers(render: Render) -> None:
    m = render(
        worker_node_taints=["dedicated=ingress:NoSchedule"],
        worker_pools=[
            {"name": "edge", "ingress": True, "node_taints": ["edge:NoExecute"]},
            {"name": "batch", "node_taints": ["batch=yes:NoSchedule"]},
        ],
    )
    keys = toleration_keys(find(m, "DaemonSet", "nginx-ingress-controller"))
    assert keys == {"dedicated", "edge"}
