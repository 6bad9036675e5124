"""Certificates read back by OpenSSL: subjects, names, usages, chains, and their lifecycle."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from squall.assets import tls
from squall.spec import Spec
from squall.state import State, StateError

MakeSpec = Callable[..., Spec]

LEAVES = {
    # state name: (CA state name, subject as OpenSSL prints it, OpenSSL purposes it must pass)
    "tls/k8s/apiserver": (
        "tls/k8s/ca",
        "CN=kube-apiserver,O=system:masters",
        ("sslserver", "sslclient"),
    ),
    "tls/k8s/admin": ("tls/k8s/ca", "CN=kubernetes-admin,O=system:masters", ("sslclient",)),
    "tls/k8s/controller-manager": (
        "tls/k8s/ca",
        "CN=system:kube-controller-manager",
        ("sslclient",),
    ),
    "tls/k8s/scheduler": ("tls/k8s/ca", "CN=system:kube-scheduler", ("sslclient",)),
    "tls/k8s/aggregation-client": (
        "tls/k8s/aggregation-ca",
        "CN=front-proxy-client",
        ("sslclient",),
    ),
    "tls/etcd/server": ("tls/etcd/ca", "CN=etcd-server,O=etcd", ("sslserver", "sslclient")),
    "tls/etcd/client": ("tls/etcd/ca", "CN=etcd-client,O=etcd", ("sslserver", "sslclient")),
    "tls/etcd/peer": ("tls/etcd/ca", "CN=etcd-peer,O=etcd", ("sslserver", "sslclient")),
}
CAS = {
    "tls/k8s/ca": "CN=kubernetes-ca,O=squall",
    "tls/k8s/aggregation-ca": "CN=kubernetes-front-proxy-ca,O=squall",
    "tls/etcd/ca": "CN=etcd-ca,O=etcd",
}


def openssl(*args: str) -> str:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def subject(path: Path) -> str:
    # RFC 2253 lists the last RDN first; reverse to read it as issued.
    line = openssl("x509", "-in", str(path), "-noout", "-subject", "-nameopt", "RFC2253")
    return ",".join(reversed(line.removeprefix("subject=").strip().split(",")))


def san(path: Path) -> list[str]:
    text = openssl("x509", "-in", str(path), "-noout", "-ext", "subjectAltName")
    lines = text.strip().splitlines()
    return sorted(x.strip() for x in lines[1].split(",")) if len(lines) > 1 else []


def snapshot(state: State) -> dict[str, bytes]:
    return {
        str(p.relative_to(state.root)): p.read_bytes()
        for p in sorted(state.root.rglob("*"))
        if p.is_file()
    }


def test_every_leaf_chains_to_its_ca_with_the_promised_subject_and_purpose(
    make_spec: MakeSpec, state: State
) -> None:
    tls.ensure(make_spec(controller_count=3), state)
    for name, expected in CAS.items():
        assert subject(state.path(f"{name}.crt")) == expected
        text = openssl("x509", "-in", str(state.path(f"{name}.crt")), "-noout", "-text")
        assert "CA:TRUE" in text
        assert "Certificate Sign" in text
    for name, (ca, expected, purposes) in LEAVES.items():
        cert = str(state.path(f"{name}.crt"))
        assert subject(state.path(f"{name}.crt")) == expected
        for purpose in purposes:
            verdict = openssl(
                "verify", "-CAfile", str(state.path(f"{ca}.crt")), "-purpose", purpose, cert
            )
            assert verdict.strip() == f"{cert}: OK"
        text = openssl("x509", "-in", cert, "-noout", "-text")
        assert "CA:FALSE" in text
        assert "ASN1 OID: prime256v1" in text


def test_a_leaf_does_not_verify_against_another_ca(make_spec: MakeSpec, state: State) -> None:
    tls.ensure(make_spec(), state)
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(state.path("tls/etcd/ca.crt")),
            str(state.path("tls/k8s/apiserver.crt")),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0


def test_client_only_certificates_are_no_servers(make_spec: MakeSpec, state: State) -> None:
    tls.ensure(make_spec(), state)
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(state.path("tls/k8s/ca.crt")),
            "-purpose",
            "sslserver",
            str(state.path("tls/k8s/admin.crt")),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0


def test_apiserver_names_are_exactly_the_api_fqdn_the_service_names_and_service_ip_1(
    make_spec: MakeSpec, state: State
) -> None:
    tls.ensure(make_spec(cluster_name="storm", service_cidr="10.96.0.0/12"), state)
    assert san(state.path("tls/k8s/apiserver.crt")) == sorted(
        [
            "DNS:storm.aws.example.com",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "IP Address:10.96.0.1",
        ]
    )


def test_etcd_names_cover_every_member(make_spec: MakeSpec, state: State) -> None:
    tls.ensure(make_spec(controller_count=3), state)
    members = [f"DNS:tempest-etcd{i}.aws.example.com" for i in range(3)]
    local = ["DNS:localhost", "IP Address:127.0.0.1"]
    assert san(state.path("tls/etcd/server.crt")) == sorted(members + local)
    assert san(state.path("tls/etcd/client.crt")) == sorted(members + local)
    assert san(state.path("tls/etcd/peer.crt")) == sorted(members)


def test_service_account_key_pair_is_p256_and_matches(make_spec: MakeSpec, state: State) -> None:
    pki = tls.ensure(make_spec(), state)
    key_path = state.path("tls/k8s/service-account.key")
    derived = subprocess.run(
        ["openssl", "pkey", "-in", str(key_path), "-pubout"], capture_output=True, check=True
    ).stdout
    assert derived == pki.service_account_pub
    assert "prime256v1" in openssl("pkey", "-in", str(key_path), "-noout", "-text")


def test_keys_are_private_in_state(make_spec: MakeSpec, state: State) -> None:
    tls.ensure(make_spec(), state)
    keys = sorted(state.root.rglob("*.key"))
    assert len(keys) == len(LEAVES) + len(CAS) + 1
    for path in state.root.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_second_run_reuses_everything_byte_for_byte(make_spec: MakeSpec, state: State) -> None:
    spec = make_spec(controller_count=3)
    first = tls.ensure(spec, state)
    before = snapshot(state)
    second = tls.ensure(spec, state)
    assert second == first
    assert snapshot(state) == before


def test_more_controllers_reissue_only_the_etcd_leaves_from_the_same_ca(
    make_spec: MakeSpec, state: State
) -> None:
    tls.ensure(make_spec(controller_count=1), state)
    before = snapshot(state)
    tls.ensure(make_spec(controller_count=3), state)
    after = snapshot(state)
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == ["tls/etcd/client.crt", "tls/etcd/peer.crt", "tls/etcd/server.crt"]
    assert "DNS:tempest-etcd2.aws.example.com" in san(state.path("tls/etcd/peer.crt"))
    for leaf in ("client", "peer", "server"):
        cert = str(state.path(f"tls/etcd/{leaf}.crt"))
        verdict = openssl("verify", "-CAfile", str(state.path("tls/etcd/ca.crt")), cert)
        assert verdict.strip() == f"{cert}: OK"
        # The key is kept: only the certificate changes.
        modulus = openssl("x509", "-in", cert, "-noout", "-pubkey")
        assert (
            modulus.encode()
            == subprocess.run(
                ["openssl", "pkey", "-in", str(state.path(f"tls/etcd/{leaf}.key")), "-pubout"],
                capture_output=True,
                check=True,
            ).stdout
        )


def test_another_dns_zone_reissues_apiserver_and_etcd_leaves(
    make_spec: MakeSpec, state: State
) -> None:
    tls.ensure(make_spec(), state)
    before = snapshot(state)
    tls.ensure(make_spec(dns_zone="k8s.example.org"), state)
    after = snapshot(state)
    changed = sorted(k for k in before if before[k] != after[k])
    assert changed == [
        "tls/etcd/client.crt",
        "tls/etcd/peer.crt",
        "tls/etcd/server.crt",
        "tls/k8s/apiserver.crt",
    ]
    assert "DNS:tempest.k8s.example.org" in san(state.path("tls/k8s/apiserver.crt"))


def test_leaves_near_their_end_are_renewed_and_the_ca_is_kept(
    make_spec: MakeSpec, state: State
) -> None:
    spec = make_spec()
    tls.ensure(spec, state)
    before = snapshot(state)
    later = dt.datetime.now(dt.UTC) + tls.LEAF_VALIDITY - dt.timedelta(days=30)
    tls.ensure(spec, state, now=later)
    after = snapshot(state)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {f"{name}.crt" for name in LEAVES}
    end = openssl("x509", "-in", str(state.path("tls/k8s/admin.crt")), "-noout", "-enddate")
    renewed_until = dt.datetime.strptime(end.strip(), "notAfter=%b %d %H:%M:%S %Y GMT")
    assert renewed_until.replace(tzinfo=dt.UTC) > later + dt.timedelta(days=365)


def test_leaves_never_outlive_their_ca(make_spec: MakeSpec, state: State) -> None:
    spec = make_spec()
    tls.ensure(spec, state)
    ca_end = openssl("x509", "-in", str(state.path("tls/k8s/ca.crt")), "-noout", "-enddate")
    late = dt.datetime.now(dt.UTC) + tls.CA_VALIDITY - dt.timedelta(days=200)
    tls.ensure(spec, state, now=late)
    leaf_end = openssl("x509", "-in", str(state.path("tls/k8s/admin.crt")), "-noout", "-enddate")
    assert leaf_end == ca_end


def test_a_missing_ca_certificate_is_re_signed_from_the_stored_key(
    make_spec: MakeSpec, state: State
) -> None:
    spec = make_spec()
    tls.ensure(spec, state)
    leaf = state.read("tls/k8s/apiserver.crt")
    state.path("tls/k8s/ca.crt").unlink()
    tls.ensure(spec, state)
    assert state.read("tls/k8s/apiserver.crt") == leaf
    cert = str(state.path("tls/k8s/apiserver.crt"))
    verdict = openssl("verify", "-CAfile", str(state.path("tls/k8s/ca.crt")), cert)
    assert verdict.strip() == f"{cert}: OK"


def test_a_missing_ca_key_is_an_error_not_a_new_ca(make_spec: MakeSpec, state: State) -> None:
    tls.ensure(make_spec(), state)
    ca = state.read("tls/etcd/ca.crt")
    state.path("tls/etcd/ca.key").unlink()
    with pytest.raises(StateError, match=r"tls/etcd/ca\.key: missing .* restore"):
        tls.ensure(make_spec(), state)
    assert state.read("tls/etcd/ca.crt") == ca
    assert state.read("tls/etcd/ca.key") is None


@pytest.mark.parametrize("name", ["tls/k8s/ca.key", "tls/k8s/ca.crt", "tls/etcd/peer.key"])
def test_corrupt_files_are_errors(make_spec: MakeSpec, state: State, name: str) -> None:
    tls.ensure(make_spec(), state)
    state.write(name, b"-----BEGIN NONSENSE-----\n")
    with pytest.raises(StateError, match="restore it from a backup"):
        tls.ensure(make_spec(), state)


def test_an_expired_ca_is_an_error(make_spec: MakeSpec, state: State) -> None:
    tls.ensure(make_spec(), state)
    much_later = dt.datetime.now(dt.UTC) + tls.CA_VALIDITY + dt.timedelta(days=1)
    with pytest.raises(StateError, match="the CA expired"):
        tls.ensure(make_spec(), state, now=much_later)


def test_bundle_marks_exactly_the_keys_secret(make_spec: MakeSpec, state: State) -> None:
    files = tls.bundle(tls.ensure(make_spec(), state))
    assert {p for p, (_, secret) in files.items() if secret} == {
        p for p in files if p.endswith(".key")
    }
