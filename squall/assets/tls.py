"""The cluster's certificate authorities and certificates, generated once and kept in state.

Why ECDSA P-256: every peer that reads these keys accepts it — etcd and the Kubernetes
components through Go's crypto/tls, the kubelet for its client certificates, kube-apiserver and
kube-controller-manager for ES256 service-account tokens — and a P-256 key is generated in well
under a millisecond where an RSA key takes tens of milliseconds or more, so a first render stays
instant. At 128-bit security it is stronger than the RSA 2048 keys Typhoon uses, with smaller
certificates and faster TLS handshakes.

Validity: the CAs last ten years, since replacing a CA means re-trusting every node and
kubeconfig. Leaf certificates last two years rather than one: squall has no in-cluster rotation
of control-plane certificates, so a one-year leaf would stop a cluster nobody touched for a
year. Every render re-issues, from the stored CA, any leaf within 90 days of its end, so a
routine ``squall apply`` renews them long before they lapse.

Subjects follow Typhoon's, except the organisation of squall's own CAs: Typhoon's Kubernetes
CA is ``O=typhoon``, squall's is ``O=squall`` (the front-proxy CA too). The etcd certificates
keep ``O=etcd``.

A leaf is re-issued, keeping its key, whenever it no longer matches what the cluster file
asks for (another DNS zone, more controllers and so more etcd names) or is near its end. A CA
is never replaced: a missing or unreadable CA key is an error, not a reason to start over.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from squall.spec import Spec
from squall.state import State, StateError

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=730)
RENEW_BEFORE = dt.timedelta(days=90)
# Tolerates clocks on nodes that run a little behind the machine that issued the certificate.
BACKDATE = dt.timedelta(minutes=5)

SQUALL_ORG = "squall"
FRONT_PROXY_CLIENT_CN = "front-proxy-client"

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Profile:
    """What a certificate must say: its subject, names and purposes."""

    common_name: str
    organization: str | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = False
    client: bool = False

    @property
    def subject(self) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, self.common_name)]
        if self.organization is not None:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        return x509.Name(attrs)

    @property
    def usages(self) -> frozenset[x509.ObjectIdentifier]:
        out = set()
        if self.server:
            out.add(ExtendedKeyUsageOID.SERVER_AUTH)
        if self.client:
            out.add(ExtendedKeyUsageOID.CLIENT_AUTH)
        return frozenset(out)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key(self) -> PrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key


@dataclass(frozen=True)
class ClusterTLS:
    """Every key and certificate of one cluster."""

    ca: KeyPair
    apiserver: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    service_account_key: bytes  # PEM, PKCS#8
    service_account_pub: bytes  # PEM, SubjectPublicKeyInfo
    aggregation_ca: KeyPair
    aggregation_client: KeyPair
    etcd_ca: KeyPair
    etcd_server: KeyPair
    etcd_client: KeyPair
    etcd_peer: KeyPair


# Profiles: pure functions of the cluster file.

CA_PROFILES = {
    "tls/k8s/ca": Profile("kubernetes-ca", SQUALL_ORG),
    "tls/k8s/aggregation-ca": Profile("kubernetes-front-proxy-ca", SQUALL_ORG),
    "tls/etcd/ca": Profile("etcd-ca", "etcd"),
}


def apiserver_dns_names(spec: Spec) -> tuple[str, ...]:
    return (
        spec.api_fqdn,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )


def leaf_profiles(spec: Spec) -> dict[str, tuple[str, Profile]]:
    """State name of each leaf → (state name of its CA, its profile)."""
    etcd_names = tuple(spec.etcd_fqdns)
    etcd_local = (*etcd_names, "localhost")
    return {
        "tls/k8s/apiserver": (
            "tls/k8s/ca",
            Profile(
                "kube-apiserver",
                "system:masters",
                apiserver_dns_names(spec),
                (spec.service_ip(1),),
                server=True,
                client=True,
            ),
        ),
        "tls/k8s/admin": (
            "tls/k8s/ca",
            Profile("kubernetes-admin", "system:masters", client=True),
        ),
        "tls/k8s/controller-manager": (
            "tls/k8s/ca",
            Profile("system:kube-controller-manager", client=True),
        ),
        "tls/k8s/scheduler": ("tls/k8s/ca", Profile("system:kube-scheduler", client=True)),
        "tls/k8s/aggregation-client": (
            "tls/k8s/aggregation-ca",
            Profile(FRONT_PROXY_CLIENT_CN, client=True),
        ),
        "tls/etcd/server": (
            "tls/etcd/ca",
            Profile("etcd-server", "etcd", etcd_local, ("127.0.0.1",), server=True, client=True),
        ),
        "tls/etcd/client": (
            "tls/etcd/ca",
            Profile("etcd-client", "etcd", etcd_local, ("127.0.0.1",), server=True, client=True),
        ),
        "tls/etcd/peer": (
            "tls/etcd/ca",
            Profile("etcd-peer", "etcd", etcd_names, server=True, client=True),
        ),
    }


# Pure certificate construction.


def new_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def self_signed_ca(profile: Profile, key: PrivateKey, now: dt.datetime) -> x509.Certificate:
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(profile.subject)
        .issuer_name(profile.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def issue(
    profile: Profile, public: ec.EllipticCurvePublicKey, ca: KeyPair, now: dt.datetime
) -> x509.Certificate:
    ca_cert = ca.cert
    # A leaf never outlives its issuer: it would fail to verify after the CA expires anyway.
    not_after = min(now + LEAF_VALIDITY, ca_cert.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(profile.subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(sorted(profile.usages, key=str)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    names = _general_names(profile.dns_names, profile.ip_addresses)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(dns: Iterable[str], ips: Iterable[str]) -> list[x509.GeneralName]:
    return [
        *(x509.DNSName(d) for d in dns),
        *(x509.IPAddress(ipaddress.ip_address(i)) for i in ips),
    ]


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    return (
        set(ext.get_values_for_type(x509.DNSName)),
        {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)},
    )


def _usages(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier]:
    try:
        return frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return frozenset()


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def reissue_reason(pair: KeyPair, profile: Profile, ca: KeyPair, now: dt.datetime) -> str | None:
    """Why a stored leaf no longer serves, or None when it still does."""
    cert = pair.cert
    if cert.public_key() != pair.key.public_key():
        return "its key does not match"
    if not issued_by(cert, ca.cert):
        return "it was not issued by the current CA"
    if cert.subject != profile.subject:
        return "its subject changed"
    if sans(cert) != (set(profile.dns_names), set(profile.ip_addresses)):
        return "its names changed"
    if _usages(cert) != profile.usages:
        return "its usages changed"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return "it is near its end"
    return None


# State: load what exists, create only what is missing.


def _load_pair(state: State, name: str) -> tuple[bytes | None, bytes | None]:
    return state.read(f"{name}.crt"), state.read(f"{name}.key")


def _parse_key(state: State, name: str, data: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise StateError(
            f"{state.path(name)}: not a readable ECDSA private key; restore it from a backup"
        )
    return key


def _parse_cert(state: State, name: str, data: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise StateError(
            f"{state.path(name)}: not a readable certificate; restore it from a backup"
        ) from None


def ensure_ca(state: State, name: str, profile: Profile, now: dt.datetime) -> KeyPair:
    """The CA stored under ``name``, created only if neither its key nor certificate exists."""
    cert_data, key_data = _load_pair(state, name)
    if key_data is None:
        if cert_data is not None:
            raise StateError(
                f"{state.path(name + '.key')}: missing while its certificate exists; "
                "restore the CA key from a backup (a new CA would orphan every node)"
            )
        key = new_key()
        cert = self_signed_ca(profile, key, now)
        # Key first: a crash after it leaves a key that the next run self-signs again.
        state.write(f"{name}.key", key_pem(key))
        state.write(f"{name}.crt", cert_pem(cert))
        return KeyPair(cert_pem(cert), key_pem(key))
    key = _parse_key(state, f"{name}.key", key_data)
    if cert_data is None:
        # The same key and subject give a CA that every existing leaf still chains to.
        cert = self_signed_ca(profile, key, now)
        state.write(f"{name}.crt", cert_pem(cert))
        return KeyPair(cert_pem(cert), key_data)
    cert = _parse_cert(state, f"{name}.crt", cert_data)
    if cert.public_key() != key.public_key():
        raise StateError(
            f"{state.path(name + '.crt')}: does not match {name}.key; restore both from a backup"
        )
    if cert.not_valid_after_utc <= now:
        raise StateError(
            f"{state.path(name + '.crt')}: the CA expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; the cluster needs a new CA and new nodes"
        )
    return KeyPair(cert_data, key_data)


def ensure_leaf(
    state: State, name: str, profile: Profile, ca: KeyPair, now: dt.datetime
) -> KeyPair:
    """The leaf stored under ``name``, re-issued from ``ca`` when it no longer serves."""
    cert_data, key_data = _load_pair(state, name)
    key = None
    if key_data is not None:
        key = _parse_key(state, f"{name}.key", key_data)
        if cert_data is not None:
            _parse_cert(state, f"{name}.crt", cert_data)
            stored = KeyPair(cert_data, key_data)
            if reissue_reason(stored, profile, ca, now) is None:
                return stored
    if key is None:
        key = new_key()
        state.write(f"{name}.key", key_pem(key))
    cert = cert_pem(issue(profile, key.public_key(), ca, now))
    state.write(f"{name}.crt", cert)
    return KeyPair(cert, key_pem(key))


def ensure_service_account_key(state: State) -> PrivateKey:
    name = "tls/k8s/service-account.key"
    data = state.read(name)
    if data is not None:
        return _parse_key(state, name, data)
    key = new_key()
    state.write(name, key_pem(key))
    return key


def ensure(spec: Spec, state: State, now: dt.datetime | None = None) -> ClusterTLS:
    """The cluster's TLS material: read from state, with anything missing or stale made anew."""
    now = now or dt.datetime.now(dt.UTC)
    cas = {name: ensure_ca(state, name, p, now) for name, p in CA_PROFILES.items()}
    leaves = {
        name: ensure_leaf(state, name, profile, cas[ca], now)
        for name, (ca, profile) in leaf_profiles(spec).items()
    }
    sa = ensure_service_account_key(state)
    return ClusterTLS(
        ca=cas["tls/k8s/ca"],
        apiserver=leaves["tls/k8s/apiserver"],
        admin=leaves["tls/k8s/admin"],
        controller_manager=leaves["tls/k8s/controller-manager"],
        scheduler=leaves["tls/k8s/scheduler"],
        service_account_key=key_pem(sa),
        service_account_pub=public_pem(sa),
        aggregation_ca=cas["tls/k8s/aggregation-ca"],
        aggregation_client=leaves["tls/k8s/aggregation-client"],
        etcd_ca=cas["tls/etcd/ca"],
        etcd_server=leaves["tls/etcd/server"],
        etcd_client=leaves["tls/etcd/client"],
        etcd_peer=leaves["tls/etcd/peer"],
    )


def bundle(pki: ClusterTLS) -> dict[str, tuple[bytes, bool]]:
    """The TLS part of the controller asset bundle: path → (content, is secret)."""
    etcd_ca = pki.etcd_ca.cert_pem
    files: dict[str, tuple[bytes, bool]] = {
        "tls/k8s/ca.crt": (pki.ca.cert_pem, False),
        # Needed on controllers: kube-controller-manager signs kubelet certificates with it.
        "tls/k8s/ca.key": (pki.ca.key_pem, True),
        "tls/k8s/apiserver.crt": (pki.apiserver.cert_pem, False),
        "tls/k8s/apiserver.key": (pki.apiserver.key_pem, True),
        "tls/k8s/service-account.pub": (pki.service_account_pub, False),
        "tls/k8s/service-account.key": (pki.service_account_key, True),
        "tls/k8s/aggregation-ca.crt": (pki.aggregation_ca.cert_pem, False),
        "tls/k8s/aggregation-client.crt": (pki.aggregation_client.cert_pem, False),
        "tls/k8s/aggregation-client.key": (pki.aggregation_client.key_pem, True),
        # One etcd CA verifies servers, peers and clients; the three names let each role's
        # trust be split later without touching the layout on the nodes.
        "tls/etcd/etcd-client-ca.crt": (etcd_ca, False),
        "tls/etcd/etcd-client.crt": (pki.etcd_client.cert_pem, False),
        "tls/etcd/etcd-client.key": (pki.etcd_client.key_pem, True),
        "tls/etcd/server-ca.crt": (etcd_ca, False),
        "tls/etcd/server.crt": (pki.etcd_server.cert_pem, False),
        "tls/etcd/server.key": (pki.etcd_server.key_pem, True),
        "tls/etcd/peer-ca.crt": (etcd_ca, False),
        "tls/etcd/peer.crt": (pki.etcd_peer.cert_pem, False),
        "tls/etcd/peer.key": (pki.etcd_peer.key_pem, True),
    }
    return files
