"""``assets.build``: the bundle contract, determinism, secrecy and the bootstrap token."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from squall import assets
from squall.assets import token
from squall.spec import Spec
from squall.state import State, StateError

MakeSpec = Callable[..., Spec]


def test_bundle_holds_exactly_the_contract_plus_manifests(
    make_spec: MakeSpec,
    state: State,
    bundle_contract: frozenset[str],
) -> None:
    bundle = assets.build(make_spec(), state)
    paths = [f.path for f in bundle.files]
    assert paths == sorted(paths)
    rest = set(paths) - bundle_contract
    assert set(paths) >= bundle_contract
    assert rest and all(re.fullmatch(r"manifests/[a-z0-9/_.-]+\.yaml", p) for p in rest), rest


def test_building_twice_gives_identical_bytes(make_spec: MakeSpec, state: State) -> None:
    spec = make_spec(controller_count=3, networking="flannel")
    assert assets.build(spec, state) == assets.build(spec, state)


def test_secrets_are_flagged(
    make_spec: MakeSpec, state: State, bundle_contract: frozenset[str]
) -> None:
    bundle = assets.build(make_spec(), state)
    secret = {f.path for f in bundle.files if f.secret}
    assert {p for p in bundle_contract if p.endswith((".key", ".conf"))} <= secret
    assert not {p for p in secret if p.endswith((".crt", ".pub"))}
    stored = (state.read("auth/bootstrap-token") or b"").decode().strip()
    token_secret = stored.split(".")[1].encode()
    holding = {f.path for f in bundle.files if token_secret in f.content}
    # The bootstrap token's Secret object carries it; nothing public may.
    assert holding
    assert holding <= secret


def test_summary_values_match_the_bundle(make_spec: MakeSpec, state: State) -> None:
    bundle = assets.build(make_spec(), state)
    assert bundle.ca_cert.encode() == bundle.file("tls/k8s/ca.crt").content
    assert (
        bundle.service_account_public_key.encode()
        == bundle.file("tls/k8s/service-account.pub").content
    )
    assert bundle.admin_kubeconfig.encode() == bundle.file("auth/admin.conf").content


def test_manifests_are_multi_document_yaml_of_whole_objects(
    make_spec: MakeSpec, state: State
) -> None:
    bundle = assets.build(make_spec(), state)
    manifests = [f for f in bundle.files if f.path.startswith("manifests/")]
    for f in manifests:
        docs = list(yaml.safe_load_all(f.content))
        assert docs, f.path
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f.path


def test_manifest_paths_must_stay_inside_the_bundle() -> None:
    with pytest.raises(ValueError, match="relative"):
        assets.manifest_files({"../escape.yaml": []})
    with pytest.raises(ValueError, match="relative"):
        assets.manifest_files({"coredns.json": []})


def test_token_is_created_once_and_reused(state: State) -> None:
    first = token.load_or_create(state)
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", first.value)
    assert token.load_or_create(state) == first
    assert (state.path(token.STATE_NAME).stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("stored", [b"short.token", b"ABCDEF.0123456789abcdef", b"\xff\xfe"])
def test_a_corrupt_token_is_an_error_not_a_new_token(state: State, stored: bytes) -> None:
    state.write(token.STATE_NAME, stored)
    with pytest.raises(StateError, match="bootstrap-token: not a bootstrap token"):
        token.load_or_create(state)
    assert state.read(token.STATE_NAME) == stored


def test_state_from_another_directory_is_independent(make_spec: MakeSpec, tmp_path: Path) -> None:
    spec = make_spec()
    a = assets.build(spec, State(tmp_path / "a"))
    b = assets.build(spec, State(tmp_path / "b"))
    assert a.ca_cert != b.ca_cert
