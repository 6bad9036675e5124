"""etcd's configuration on each controller, as the ``ETCD_*`` environment of its unit.

Every controller runs one etcd member named ``etcdI``. Members find each other by the Route53
names ``NAME-etcdI.ZONE`` (plain A records to the controllers' private addresses), so the
certificates can name stable hosts even though the addresses are only known once the instances
exist. Clients and peers both must present a certificate from the etcd CA.
"""

from __future__ import annotations

from squall.spec import Spec

CLIENT_PORT = 2379
PEER_PORT = 2380
METRICS_PORT = 2381

# Where the controller layout puts etcd's own certificates; the etcd container mounts
# /etc/ssl/etcd at the same path, so these are valid both on the host and inside it.
TLS_DIR = "/etc/ssl/etcd/etcd"
DATA_DIR = "/var/lib/etcd"
ENV_FILE = "/etc/etcd/etcd.env"


def member_name(index: int) -> str:
    return f"etcd{index}"


def client_url(spec: Spec, index: int) -> str:
    return f"https://{spec.etcd_fqdn(index)}:{CLIENT_PORT}"


def peer_url(spec: Spec, index: int) -> str:
    return f"https://{spec.etcd_fqdn(index)}:{PEER_PORT}"


def client_urls(spec: Spec) -> list[str]:
    """Every member's client URL, as kube-apiserver's ``--etcd-servers`` lists them."""
    return [client_url(spec, i) for i in range(spec.controller_count)]


def initial_cluster(spec: Spec) -> str:
    return ",".join(f"{member_name(i)}={peer_url(spec, i)}" for i in range(spec.controller_count))


def etcd_env(spec: Spec, index: int) -> dict[str, str]:
    """The ``ETCD_*`` variables of controller ``index`` (0-based)."""
    if not 0 <= index < spec.controller_count:
        raise ValueError(f"controller index {index} is outside 0..{spec.controller_count - 1}")
    return {
        "ETCD_NAME": member_name(index),
        "ETCD_DATA_DIR": DATA_DIR,
        "ETCD_ADVERTISE_CLIENT_URLS": client_url(spec, index),
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer_url(spec, index),
        "ETCD_LISTEN_CLIENT_URLS": f"https://0.0.0.0:{CLIENT_PORT}",
        "ETCD_LISTEN_PEER_URLS": f"https://0.0.0.0:{PEER_PORT}",
        # Plain HTTP on its own port so Prometheus can scrape without an etcd client cert.
        "ETCD_LISTEN_METRICS_URLS": f"http://0.0.0.0:{METRICS_PORT}",
        "ETCD_INITIAL_CLUSTER": initial_cluster(spec),
        # A distinct token keeps members of two clusters from joining each other by mistake.
        "ETCD_INITIAL_CLUSTER_TOKEN": spec.cluster_name,
        "ETCD_STRICT_RECONFIG_CHECK": "true",
        "ETCD_TRUSTED_CA_FILE": f"{TLS_DIR}/server-ca.crt",
        "ETCD_CERT_FILE": f"{TLS_DIR}/server.crt",
        "ETCD_KEY_FILE": f"{TLS_DIR}/server.key",
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_TRUSTED_CA_FILE": f"{TLS_DIR}/peer-ca.crt",
        "ETCD_PEER_CERT_FILE": f"{TLS_DIR}/peer.crt",
        "ETCD_PEER_KEY_FILE": f"{TLS_DIR}/peer.key",
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
    }
