"""The Vault test double, driven through hvac as the keys service drives a real Vault.

These tests pin the double to Vault's documented behaviour (shapes, status codes, messages),
because the keys service's Vault backend is tested against the double on machines without Vault.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator

import hvac
import hvac.exceptions
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hvac.api.secrets_engines.transit import Transit

from tests.vault_double import VaultDouble
from tests.vault_double.acl import Acl, validate_rules

INVALID_TOKEN = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"
POLICY_DENIED = "1 error occurred:\n\t* permission denied\n\n"
TOO_OLD = "ciphertext or signature version is disallowed by policy (too old)"
AUTH_FAILED = "cipher: message authentication failed"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def vault() -> Iterator[VaultDouble]:
    with VaultDouble() as double:
        yield double


@pytest.fixture
def client(vault: VaultDouble) -> hvac.Client:
    return hvac.Client(url=vault.address, token=vault.root_token, timeout=5)


@pytest.fixture
def transit(client: hvac.Client) -> Transit:
    return client.secrets.transit


def make_key(transit: Transit, name: str = "k") -> None:
    transit.create_key(name=name, derived=True)


def flip_a_bit(ciphertext: str) -> str:
    """The ciphertext with one bit of its encrypted body changed, still well-formed."""
    prefix, payload = ciphertext.rsplit(":", 1)
    raw = bytearray(base64.b64decode(payload))
    raw[14] ^= 0x01
    return f"{prefix}:{b64(bytes(raw))}"


# -- keys ---------------------------------------------------------------------------------


def test_create_read_rotate_and_configure_a_key(transit: Transit) -> None:
    created = transit.create_key(name="docs", derived=True)["data"]
    assert created["type"] == "aes256-gcm96"
    assert created["derived"] is True
    assert created["kdf"] == "hkdf_sha256"
    assert created["latest_version"] == 1
    assert list(created["keys"]) == ["1"]

    rotated = transit.rotate_key(name="docs")["data"]
    assert rotated["latest_version"] == 2

    configured = transit.update_key_configuration(name="docs", min_decryption_version=2)["data"]
    assert configured["min_decryption_version"] == 2
    read = transit.read_key(name="docs")["data"]
    assert read["min_decryption_version"] == 2
    assert read["min_encryption_version"] == 0
    assert list(read["keys"]) == ["2"], "versions below min_decryption_version are archived"


def test_creating_an_existing_key_is_a_no_op_with_vaults_warning(transit: Transit) -> None:
    make_key(transit)
    transit.rotate_key(name="k")
    again = transit.create_key(name="k", derived=True)
    assert again["data"]["latest_version"] == 2
    assert again["warnings"] == ["key k already existed"]


def test_reading_a_missing_key_is_404(transit: Transit) -> None:
    with pytest.raises(hvac.exceptions.InvalidPath):
        transit.read_key(name="missing")


def test_min_decryption_version_cannot_exceed_latest(transit: Transit) -> None:
    make_key(transit)
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        transit.update_key_configuration(name="k", min_decryption_version=3)
    assert raised.value.errors == [
        "cannot set min decryption version of 3, latest key version is 1"
    ]


# -- encryption ---------------------------------------------------------------------------


def test_round_trip_with_context_and_refusals_for_another_context_or_key(transit: Transit) -> None:
    make_key(transit, "a")
    make_key(transit, "b")
    context = b64(b"org-1/doc-1")
    sealed = transit.encrypt_data(name="a", plaintext=b64(b"dek bytes"), context=context)["data"]
    assert sealed["key_version"] == 1
    assert sealed["ciphertext"].startswith("vault:v1:")

    opened = transit.decrypt_data(name="a", ciphertext=sealed["ciphertext"], context=context)
    assert base64.b64decode(opened["data"]["plaintext"]) == b"dek bytes"

    for name, other_context in (("a", b64(b"org-1/doc-2")), ("b", context)):
        with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
            transit.decrypt_data(name=name, ciphertext=sealed["ciphertext"], context=other_context)
        assert raised.value.errors == [AUTH_FAILED]


def test_a_derived_key_refuses_to_work_without_a_context(transit: Transit) -> None:
    make_key(transit)
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        transit.encrypt_data(name="k", plaintext=b64(b"x"))
    assert raised.value.errors[0].startswith("missing 'context' for key derivation;")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (flip_a_bit, AUTH_FAILED),
        (lambda ct: ct.split(":", 2)[2], "invalid ciphertext: no prefix"),
        (lambda ct: "vault:v1", "invalid ciphertext: wrong number of fields"),
        (
            lambda ct: "vault:vX:" + ct.split(":", 2)[2],
            "invalid ciphertext: version number could not be decoded",
        ),
        (lambda ct: "vault:v9:" + ct.split(":", 2)[2], "invalid ciphertext: version is too new"),
        (lambda ct: "vault:v1:@@@@", "invalid ciphertext: could not decode base64"),
        (lambda ct: "vault:v1:AAAA", "invalid ciphertext length"),
    ],
    ids=["tampered", "no-prefix", "fields", "version", "too-new", "base64", "short"],
)
def test_malformed_or_tampered_ciphertexts_get_vaults_messages(
    transit: Transit, mangle: Callable[[str], str], message: str
) -> None:
    make_key(transit)
    context = b64(b"ctx")
    ciphertext = transit.encrypt_data(name="k", plaintext=b64(b"secret"), context=context)
    bad = mangle(ciphertext["data"]["ciphertext"])
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        transit.decrypt_data(name="k", ciphertext=bad, context=context)
    assert raised.value.errors == [message]


def test_decrypting_with_a_missing_key_is_refused(transit: Transit) -> None:
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        transit.decrypt_data(name="nope", ciphertext="vault:v1:AAAA", context=b64(b"c"))
    assert raised.value.errors == ["encryption key not found"]


def test_encrypt_creates_a_missing_key_only_with_create_capability(
    vault: VaultDouble, transit: Transit
) -> None:
    transit.encrypt_data(name="upserted", plaintext=b64(b"x"), context=b64(b"c"))
    assert transit.read_key(name="upserted")["data"]["derived"] is True

    vault.add_policy("update-only", {"transit/encrypt/*": ["update"]})
    limited = hvac.Client(url=vault.address, token=vault.add_token(["update-only"]))
    limited.secrets.transit.encrypt_data(name="upserted", plaintext=b64(b"x"), context=b64(b"c"))
    with pytest.raises(hvac.exceptions.Forbidden):
        limited.secrets.transit.encrypt_data(name="fresh", plaintext=b64(b"x"), context=b64(b"c"))
    assert vault.key_names() == ["upserted"]


def test_batch_with_one_bad_item_reports_it_per_item_and_answers_400(
    vault: VaultDouble, client: hvac.Client, transit: Transit
) -> None:
    make_key(transit)
    context = b64(b"ctx")
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        transit.encrypt_data(
            name="k",
            batch_input=[
                {"plaintext": b64(b"one"), "context": context, "reference": "r1"},
                {"plaintext": "not base64!", "context": context, "reference": "r2"},
            ],
        )
    results = raised.value.json["data"]["batch_results"]
    assert results[0]["ciphertext"].startswith("vault:v1:")
    assert results[0]["reference"] == "r1"
    assert results[1]["error"] == "illegal base64 data at input byte 3"
    assert "ciphertext" not in results[1]
    assert any(
        r.path == "transit/encrypt/k" and len(r.body.get("batch_input", [])) == 2
        for r in vault.requests
    )

    good = results[0]["ciphertext"]
    batch = [{"ciphertext": good, "context": context}, {"ciphertext": good, "context": b64(b"x")}]
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        transit.decrypt_data(name="k", batch_input=batch)
    results = raised.value.json["data"]["batch_results"]
    assert base64.b64decode(results[0]["plaintext"]) == b"one"
    assert results[1] == {"plaintext": "", "error": AUTH_FAILED, "reference": ""}

    partial = client.adapter.post(
        "/v1/transit/decrypt/k", json={"batch_input": batch, "partial_failure_response_code": 207}
    )
    assert partial.status_code == 207
    assert partial.json()["data"]["batch_results"][1]["error"] == AUTH_FAILED


def test_min_decryption_version_retires_old_ciphertexts(transit: Transit) -> None:
    make_key(transit)
    context = b64(b"ctx")
    old = transit.encrypt_data(name="k", plaintext=b64(b"v1"), context=context)["data"]
    transit.rotate_key(name="k")
    transit.update_key_configuration(name="k", min_decryption_version=2)
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        transit.decrypt_data(name="k", ciphertext=old["ciphertext"], context=context)
    assert raised.value.errors == [TOO_OLD]


def test_rewrap_moves_a_ciphertext_to_the_latest_version(transit: Transit) -> None:
    make_key(transit)
    context = b64(b"ctx")
    old = transit.encrypt_data(name="k", plaintext=b64(b"dek"), context=context)["data"]
    transit.rotate_key(name="k")
    rewrapped = transit.rewrap_data(name="k", ciphertext=old["ciphertext"], context=context)
    assert rewrapped["data"]["key_version"] == 2
    assert rewrapped["data"]["ciphertext"].startswith("vault:v2:")
    opened = transit.decrypt_data(
        name="k", ciphertext=rewrapped["data"]["ciphertext"], context=context
    )
    assert base64.b64decode(opened["data"]["plaintext"]) == b"dek"


def test_datakey_plaintext_returns_a_key_and_its_wrap(transit: Transit) -> None:
    make_key(transit)
    context = b64(b"ctx")
    data = transit.generate_data_key(name="k", key_type="plaintext", context=context)["data"]
    plaintext = base64.b64decode(data["plaintext"])
    assert len(plaintext) == 32
    assert data["key_version"] == 1
    opened = transit.decrypt_data(name="k", ciphertext=data["ciphertext"], context=context)
    assert base64.b64decode(opened["data"]["plaintext"]) == plaintext
    wrapped = transit.generate_data_key(name="k", key_type="wrapped", context=context)["data"]
    assert "plaintext" not in wrapped


# -- HMAC and signatures ------------------------------------------------------------------


def test_hmac_is_deterministic_differs_by_key_and_verifies(transit: Transit) -> None:
    make_key(transit, "a")
    make_key(transit, "b")
    data = b64(b"patient-42")
    first = transit.generate_hmac(name="a", hash_input=data)["data"]["hmac"]
    assert first.startswith("vault:v1:")
    assert transit.generate_hmac(name="a", hash_input=data)["data"]["hmac"] == first
    assert transit.generate_hmac(name="b", hash_input=data)["data"]["hmac"] != first
    assert transit.verify_signed_data(name="a", hash_input=data, hmac=first)["data"]["valid"]
    other = b64(b"patient-43")
    assert not transit.verify_signed_data(name="a", hash_input=other, hmac=first)["data"]["valid"]


def test_ecdsa_signatures_are_real_and_verify(transit: Transit) -> None:
    transit.create_key(name="sig", key_type="ecdsa-p256")
    message = b"document digest input"
    signed = transit.sign_data(name="sig", hash_input=b64(message))["data"]
    assert signed["key_version"] == 1
    signature = signed["signature"]
    assert transit.verify_signed_data(name="sig", hash_input=b64(message), signature=signature)[
        "data"
    ]["valid"]
    wrong = transit.verify_signed_data(name="sig", hash_input=b64(b"other"), signature=signature)
    assert wrong["data"]["valid"] is False

    pem = transit.read_key(name="sig")["data"]["keys"]["1"]["public_key"]
    public_key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    der = base64.b64decode(signature.split(":", 2)[2])
    public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))

    digest = hashlib.sha256(message).digest()
    prehashed = transit.sign_data(name="sig", hash_input=b64(digest), prehashed=True)["data"]
    public_key.verify(
        base64.b64decode(prehashed["signature"].split(":", 2)[2]),
        message,
        ec.ECDSA(hashes.SHA256()),
    )

    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        transit.verify_signed_data(name="sig", hash_input=b64(message), signature="vault:v1:AAAA")
    assert raised.value.errors == ["supplied signature is invalid"]


# -- seal, tokens and policies ------------------------------------------------------------


def test_a_sealed_vault_answers_503_except_on_health(
    vault: VaultDouble, client: hvac.Client, transit: Transit
) -> None:
    make_key(transit)
    vault.seal()
    assert client.sys.is_sealed() is True
    assert client.sys.read_health_status(method="GET").status_code == 503
    with pytest.raises(hvac.exceptions.VaultDown) as raised:
        transit.encrypt_data(name="k", plaintext=b64(b"x"), context=b64(b"c"))
    assert raised.value.errors == ["Vault is sealed"]
    vault.unseal()
    assert client.sys.read_health_status(method="GET")["sealed"] is False
    transit.encrypt_data(name="k", plaintext=b64(b"x"), context=b64(b"c"))


def test_missing_bad_and_expired_tokens_are_forbidden(vault: VaultDouble) -> None:
    anonymous = hvac.Client(url=vault.address, token="")
    with pytest.raises(hvac.exceptions.Forbidden) as raised:
        anonymous.secrets.transit.read_key(name="k")
    assert raised.value.errors == ["missing client token"]

    bogus = hvac.Client(url=vault.address, token="hvs.not-a-token")
    with pytest.raises(hvac.exceptions.Forbidden) as raised:
        bogus.lookup_token()
    assert raised.value.errors == [INVALID_TOKEN]

    token = vault.add_token(["anything"])
    user = hvac.Client(url=vault.address, token=token)
    assert user.lookup_token()["data"]["policies"] == ["anything", "default"]
    vault.expire_token(token)
    with pytest.raises(hvac.exceptions.Forbidden) as raised:
        user.lookup_token()
    assert raised.value.errors == [INVALID_TOKEN]
    assert user.is_authenticated() is False


def test_a_policy_limited_token_is_forbidden_elsewhere(
    vault: VaultDouble, transit: Transit
) -> None:
    make_key(transit, "docs")
    make_key(transit, "secret")
    vault.add_policy(
        "docs-user",
        {
            "transit/encrypt/docs": ["update"],
            "transit/decrypt/*": ["update"],
            "transit/decrypt/secret": ["deny"],
            "transit/keys/+": ["read"],
        },
    )
    limited = hvac.Client(url=vault.address, token=vault.add_token(["docs-user"]))
    own = limited.secrets.transit
    context = b64(b"ctx")
    sealed = own.encrypt_data(name="docs", plaintext=b64(b"x"), context=context)["data"]
    own.decrypt_data(name="docs", ciphertext=sealed["ciphertext"], context=context)
    assert own.read_key(name="docs")["data"]["name"] == "docs"
    assert limited.auth.token.lookup_self()["data"]["ttl"] > 0, "the default policy applies"

    for forbidden in (
        lambda: own.encrypt_data(name="secret", plaintext=b64(b"x"), context=context),
        lambda: own.decrypt_data(name="secret", ciphertext=sealed["ciphertext"], context=context),
        lambda: own.rotate_key(name="docs"),
        lambda: own.create_key(name="docs"),
    ):
        with pytest.raises(hvac.exceptions.Forbidden) as raised:
            forbidden()
        assert raised.value.errors == [POLICY_DENIED]


@pytest.mark.parametrize(
    ("path", "capability", "allowed"),
    [
        ("transit/encrypt/docs", "update", True),
        ("transit/encrypt/other", "update", False),
        ("transit/keys/docs", "read", True),
        ("transit/keys/docs/rotate", "read", False),
        ("transit/keys/docs/rotate", "update", True),
        ("transit/decrypt/secret", "update", False),
        ("transit/decrypt/anything", "update", True),
    ],
)
def test_acl_follows_vaults_rule_priority(path: str, capability: str, allowed: bool) -> None:
    rules = validate_rules(
        {
            "transit/*": ["read"],
            "transit/encrypt/docs": ["update"],
            "transit/encrypt/*": ["deny"],
            "transit/keys/+": ["read"],
            "transit/keys/+/rotate": ["update"],
            "transit/decrypt/*": ["update"],
            "transit/decrypt/secret": ["deny"],
        }
    )
    assert Acl([rules], root=False).allows(path, capability) is allowed


# -- auth methods -------------------------------------------------------------------------


def test_approle_login_and_wrong_credentials(vault: VaultDouble) -> None:
    vault.add_approle("role-1", "secret-1", ["keys"], ttl=600)
    vault.add_approle("role-2", "secret-2", ["keys"], mount="apps/approle")
    client = hvac.Client(url=vault.address, token="")
    auth = client.auth.approle.login(role_id="role-1", secret_id="secret-1")["auth"]
    assert auth["lease_duration"] == 600
    assert auth["renewable"] is True
    assert auth["policies"] == ["default", "keys"]
    assert client.token == auth["client_token"]
    assert 0 < client.lookup_token()["data"]["ttl"] <= 600
    client.auth.approle.login(role_id="role-2", secret_id="secret-2", mount_point="apps/approle")

    for role_id, secret_id in (("role-1", "wrong"), ("unknown", "secret-1")):
        with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
            client.auth.approle.login(role_id=role_id, secret_id=secret_id)
        assert raised.value.errors == ["invalid role or secret ID"]


def test_kubernetes_login_and_wrong_credentials(vault: VaultDouble) -> None:
    vault.add_kubernetes_role("keys", "service-account-jwt", ["keys"], ttl=900)
    client = hvac.Client(url=vault.address, token="")
    auth = client.auth.kubernetes.login(role="keys", jwt="service-account-jwt")["auth"]
    assert auth["lease_duration"] == 900
    assert auth["policies"] == ["default", "keys"]
    with pytest.raises(hvac.exceptions.Forbidden) as raised:
        client.auth.kubernetes.login(role="keys", jwt="another-jwt")
    assert raised.value.errors == ["permission denied"]
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        client.auth.kubernetes.login(role="nope", jwt="service-account-jwt")
    assert raised.value.errors == ['invalid role name "nope"']


def test_renew_self_extends_a_renewable_token_only(vault: VaultDouble, client: hvac.Client) -> None:
    user = hvac.Client(url=vault.address, token=vault.add_token(["keys"], ttl=60))
    assert user.auth.token.lookup_self()["data"]["ttl"] <= 60
    renewed = user.auth.token.renew_self(increment="1h")["auth"]
    assert renewed["lease_duration"] == 3600
    assert renewed["renewable"] is True
    assert user.auth.token.lookup_self()["data"]["ttl"] > 3500
    assert user.auth.token.renew_self()["auth"]["lease_duration"] == 60

    fixed = hvac.Client(url=vault.address, token=vault.add_token(["keys"], renewable=False))
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        fixed.auth.token.renew_self()
    assert raised.value.errors == ["lease is not renewable"]
    with pytest.raises(hvac.exceptions.InvalidRequest) as raised:
        client.auth.token.renew_self()
    assert raised.value.errors == ["invalid lease ID"]


# -- transport ----------------------------------------------------------------------------


def test_hang_mode_makes_a_client_time_out(vault: VaultDouble) -> None:
    vault.set_hang(1.0)
    impatient = hvac.Client(url=vault.address, token=vault.root_token, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        impatient.lookup_token()
    assert time.monotonic() - started < 0.95


def test_unknown_paths_and_methods(client: hvac.Client) -> None:
    with pytest.raises(hvac.exceptions.InvalidPath) as raised:
        client.adapter.get("/v1/nomount/thing")
    assert raised.value.errors == ['no handler for route "nomount/thing". route entry not found.']
    with pytest.raises(hvac.exceptions.VaultError) as raised:
        client.adapter.delete("/v1/transit/encrypt/k")
    assert "unsupported operation" in raised.value.errors[0]


def test_recorded_requests_keep_secrets_out_of_repr(vault: VaultDouble, transit: Transit) -> None:
    make_key(transit)
    transit.encrypt_data(name="k", plaintext=b64(b"top secret"), context=b64(b"ctx"))
    recorded = vault.requests[-1]
    assert recorded.path == "transit/encrypt/k"
    assert recorded.json["plaintext"] == b64(b"top secret")
    assert recorded.token == vault.root_token
    assert b64(b"top secret") not in repr(recorded)
    assert vault.root_token not in repr(recorded)
