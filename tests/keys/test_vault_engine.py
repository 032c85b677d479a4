"""The Vault backend's own behaviour against the Vault double: login, renewal, failure modes.

The crypto semantics are the contract suite's (test_engine_contract.py); these tests check what
only the Vault backend has: the three login methods, token renewal and re-login, what an outage
looks like to the caller (sealed, unreachable, hanging, refusing), that a batch is one request,
and that nothing secret reaches the logs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from medrelay.services.keys.engine import (
    BackendUnavailable,
    CiphertextRejected,
    KeyNotFound,
    KeyType,
)
from medrelay.services.keys.settings import KeysSettings
from medrelay.services.keys.vault_auth import VaultSession
from medrelay.services.keys.vault_engine import VaultTransitEngine
from medrelay.settings import load
from tests.vault_double import VaultDouble

AES = KeyType.AES256_GCM96
POLICY = "medrelay-keys"
ALL_TRANSIT = {"transit/*": ["create", "read", "update"]}
KEY = "medrelay-org-a"


@pytest.fixture
def vault() -> Iterator[VaultDouble]:
    with VaultDouble() as double:
        double.add_policy(POLICY, ALL_TRANSIT)
        yield double


def keys_settings(address: str, **overrides: Any) -> KeysSettings:
    overrides.setdefault("vault_timeout_seconds", 2.0)
    return load(KeysSettings, env={}, backend="vault", vault_addr=address, **overrides)


def secret_file(tmp_path: Path, content: str) -> Path:
    path = tmp_path / f"secret-{secrets.token_hex(4)}"
    path.write_text(content + "\n")
    path.chmod(0o600)
    return path


@asynccontextmanager
async def opened(settings: KeysSettings) -> AsyncIterator[VaultTransitEngine]:
    session = VaultSession.from_settings(settings)
    await session.start()
    engine = VaultTransitEngine(
        session, mount=settings.vault_transit_mount, timeout=settings.vault_timeout_seconds
    )
    try:
        yield engine
    finally:
        await engine.close()


def token_settings(vault: VaultDouble, tmp_path: Path, token: str, **kw: Any) -> KeysSettings:
    return keys_settings(
        vault.address, vault_auth="token", vault_token_file=secret_file(tmp_path, token), **kw
    )


def approle_settings(
    vault: VaultDouble, tmp_path: Path, ttl: int = 3600, **kw: Any
) -> KeysSettings:
    role_id, secret_id = f"role-{secrets.token_hex(8)}", secrets.token_hex(16)
    vault.add_approle(role_id, secret_id, [POLICY], ttl=ttl)
    return keys_settings(
        vault.address,
        vault_auth="approle",
        vault_role=role_id,
        vault_secret_id_file=secret_file(tmp_path, secret_id),
        **kw,
    )


def paths(vault: VaultDouble, suffix: str) -> list[Any]:
    return [r for r in vault.requests if r.path.rstrip("/").endswith(suffix)]


def closed_port_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def round_trip(engine: VaultTransitEngine, name: str = KEY) -> None:
    await engine.ensure_key(name, AES)
    [ciphertext] = await engine.encrypt(name, [(b"p" * 32, b"ctx")])
    assert await engine.decrypt(name, [(ciphertext, b"ctx")]) == [b"p" * 32]


# --- login --------------------------------------------------------------------------------


async def test_token_login_from_file(vault: VaultDouble, tmp_path: Path) -> None:
    token = vault.add_token([POLICY])
    async with opened(token_settings(vault, tmp_path, token)) as engine:
        await round_trip(engine)
    transit = [r for r in vault.requests if "transit/" in r.path]
    assert transit and all(r.token == token for r in transit)


async def test_token_login_from_environment(
    vault: VaultDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = vault.add_token([POLICY])
    monkeypatch.setenv("VAULT_TOKEN", token)
    async with opened(keys_settings(vault.address, vault_auth="token")) as engine:
        await round_trip(engine)


async def test_no_token_names_the_settings(
    vault: VaultDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    session = VaultSession.from_settings(keys_settings(vault.address, vault_auth="token"))
    with pytest.raises(BackendUnavailable, match="MEDRELAY_VAULT_TOKEN_FILE"):
        await session.start()
    await session.close()


async def test_invalid_token_is_refused_without_echoing_it(
    vault: VaultDouble, tmp_path: Path
) -> None:
    token = "hvs.not-a-real-token-" + secrets.token_hex(8)
    session = VaultSession.from_settings(token_settings(vault, tmp_path, token))
    with pytest.raises(BackendUnavailable) as caught:
        await session.start()
    await session.close()
    assert "MEDRELAY_VAULT_TOKEN_FILE" in str(caught.value)
    assert token not in str(caught.value)


async def test_approle_login(vault: VaultDouble, tmp_path: Path) -> None:
    settings = approle_settings(vault, tmp_path)
    async with opened(settings) as engine:
        await round_trip(engine)
    [login] = paths(vault, "auth/approle/login")
    assert login.body["role_id"] == settings.vault_role
    transit = [r for r in vault.requests if "transit/" in r.path]
    assert all(r.token and r.token != vault.root_token for r in transit)


async def test_approle_wrong_secret_names_the_file_not_the_secret(
    vault: VaultDouble, tmp_path: Path
) -> None:
    settings = approle_settings(vault, tmp_path)
    assert settings.vault_secret_id_file is not None
    wrong = secrets.token_hex(16)
    settings.vault_secret_id_file.write_text(wrong)
    session = VaultSession.from_settings(settings)
    with pytest.raises(BackendUnavailable) as caught:
        await session.start()
    await session.close()
    message = str(caught.value)
    assert str(settings.vault_secret_id_file) in message and "MEDRELAY_VAULT_ROLE" in message
    assert wrong not in message and settings.vault_role not in message


async def test_approle_missing_secret_file(vault: VaultDouble, tmp_path: Path) -> None:
    settings = keys_settings(
        vault.address,
        vault_auth="approle",
        vault_role="r",
        vault_secret_id_file=tmp_path / "absent",
    )
    session = VaultSession.from_settings(settings)
    with pytest.raises(BackendUnavailable, match="MEDRELAY_VAULT_SECRET_ID_FILE"):
        await session.start()
    await session.close()
    assert not vault.requests  # nothing sent without a secret


async def test_kubernetes_login(vault: VaultDouble, tmp_path: Path) -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)
    vault.add_kubernetes_role("medrelay-keys", jwt, [POLICY], mount="k8s")
    settings = keys_settings(
        vault.address,
        vault_auth="kubernetes",
        vault_role="medrelay-keys",
        vault_auth_mount="k8s",
        vault_kubernetes_token_file=secret_file(tmp_path, jwt),
    )
    async with opened(settings) as engine:
        await round_trip(engine)
    [login] = paths(vault, "auth/k8s/login")
    assert login.body == {"role": "medrelay-keys", "jwt": jwt}


async def test_kubernetes_unknown_role_names_the_role(vault: VaultDouble, tmp_path: Path) -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)
    vault.add_kubernetes_role("medrelay-keys", jwt, [POLICY])
    settings = keys_settings(
        vault.address,
        vault_auth="kubernetes",
        vault_role="someone-else",
        vault_kubernetes_token_file=secret_file(tmp_path, jwt),
    )
    session = VaultSession.from_settings(settings)
    with pytest.raises(BackendUnavailable, match="someone-else") as caught:
        await session.start()
    await session.close()
    assert jwt not in str(caught.value)


# --- renewal and re-login -----------------------------------------------------------------


async def test_token_is_renewed_before_it_expires(vault: VaultDouble, tmp_path: Path) -> None:
    async with opened(approle_settings(vault, tmp_path, ttl=3)) as engine:
        started = time.monotonic()
        await round_trip(engine)
        await _sleep_until(started + 2.7)
        assert paths(vault, "auth/token/renew-self"), "no renewal within 2/3 of the TTL"
        await _sleep_until(started + 4.5)  # past the first TTL
        await round_trip(engine)
    assert len(paths(vault, "auth/approle/login")) == 1  # renewed, never logged in again


async def test_renewal_of_a_token_from_a_file(vault: VaultDouble, tmp_path: Path) -> None:
    token = vault.add_token([POLICY], ttl=3, renewable=True)
    async with opened(token_settings(vault, tmp_path, token)) as engine:
        started = time.monotonic()
        await _sleep_until(started + 4.5)
        await round_trip(engine)
    assert paths(vault, "auth/token/renew-self")


async def test_expired_token_triggers_one_relogin(vault: VaultDouble, tmp_path: Path) -> None:
    async with opened(approle_settings(vault, tmp_path)) as engine:
        await engine.ensure_key(KEY, AES)
        vault.expire_token(engine._session.client.token)
        [ciphertext] = await engine.encrypt(KEY, [(b"p" * 32, b"ctx")])  # still succeeds
        assert await engine.decrypt(KEY, [(ciphertext, b"ctx")]) == [b"p" * 32]
    assert len(paths(vault, "auth/approle/login")) == 2


async def test_concurrent_403s_share_one_relogin(vault: VaultDouble, tmp_path: Path) -> None:
    async with opened(approle_settings(vault, tmp_path)) as engine:
        await engine.ensure_key(KEY, AES)
        vault.expire_token(engine._session.client.token)
        results = await asyncio.gather(
            *(engine.encrypt(KEY, [(b"p" * 32, f"doc-{i}".encode())]) for i in range(10))
        )
    assert len(results) == 10
    assert len(paths(vault, "auth/approle/login")) == 2


async def test_renewal_refused_falls_back_to_login(vault: VaultDouble, tmp_path: Path) -> None:
    async with opened(approle_settings(vault, tmp_path, ttl=3)) as engine:
        started = time.monotonic()
        vault.expire_token(engine._session.client.token)  # renewal at 2 s will be refused
        await _sleep_until(started + 2.8)
        assert len(paths(vault, "auth/approle/login")) == 2
        requests_before = len(vault.requests)
        await round_trip(engine)
        assert not paths_since(vault, requests_before, "auth/approle/login")


def paths_since(vault: VaultDouble, start: int, suffix: str) -> list[Any]:
    return [r for r in vault.requests[start:] if r.path.rstrip("/").endswith(suffix)]


async def _sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(deadline - time.monotonic(), 0))


# --- outages ------------------------------------------------------------------------------


async def test_sealed_vault_is_unavailable_and_says_sealed(
    vault: VaultDouble, tmp_path: Path
) -> None:
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        await engine.ensure_key(KEY, AES)
        vault.seal()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as caught:
            await engine.encrypt(KEY, [(b"p" * 32, b"ctx")])
        assert caught.value.sealed
        assert time.monotonic() - started < 1.0
        vault.unseal()
        await round_trip(engine)


async def test_sealed_at_start(vault: VaultDouble, tmp_path: Path) -> None:
    vault.seal()
    session = VaultSession.from_settings(token_settings(vault, tmp_path, vault.root_token))
    with pytest.raises(BackendUnavailable) as caught:
        await session.start()
    await session.close()
    assert caught.value.sealed


async def test_unreachable_vault_fails_within_the_timeout(tmp_path: Path) -> None:
    settings = keys_settings(
        closed_port_address(),
        vault_auth="token",
        vault_token_file=secret_file(tmp_path, "hvs.x"),
        vault_timeout_seconds=0.5,
    )
    session = VaultSession.from_settings(settings)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="unreachable"):
        await session.start()
    assert time.monotonic() - started < 1.0
    await session.close()


async def test_vault_gone_after_start_fails_within_the_timeout(
    vault: VaultDouble, tmp_path: Path
) -> None:
    settings = token_settings(vault, tmp_path, vault.root_token, vault_timeout_seconds=0.5)
    async with opened(settings) as engine:
        await engine.ensure_key(KEY, AES)
        engine._session.client.url = closed_port_address()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await engine.encrypt(KEY, [(b"p" * 32, b"ctx")])
        assert time.monotonic() - started < 1.0


async def test_hanging_vault_fails_within_the_timeout(vault: VaultDouble, tmp_path: Path) -> None:
    settings = token_settings(vault, tmp_path, vault.root_token, vault_timeout_seconds=0.5)
    async with opened(settings) as engine:
        await engine.ensure_key(KEY, AES)
        vault.set_hang(5)
        try:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match="unreachable"):
                await engine.encrypt(KEY, [(b"p" * 32, b"ctx")])
            assert time.monotonic() - started < 2.0
        finally:
            vault.set_hang(0)


async def test_no_retries_are_mounted(vault: VaultDouble, tmp_path: Path) -> None:
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        http = engine._session.client.adapter.session
        for url in ("http://vault:8200", "https://vault:8200"):
            assert http.get_adapter(url).max_retries.total == 0


async def test_permission_denied_names_the_path(vault: VaultDouble, tmp_path: Path) -> None:
    vault.add_policy("encrypt-only", {"transit/keys/*": ["read"], "transit/encrypt/*": ["update"]})
    token = vault.add_token(["encrypt-only"])
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as admin:
        await admin.ensure_key(KEY, AES)
        [ciphertext] = await admin.encrypt(KEY, [(b"p" * 32, b"ctx")])
    async with opened(token_settings(vault, tmp_path, token)) as engine:
        await engine.encrypt(KEY, [(b"p" * 32, b"ctx")])
        before = len(vault.requests)
        with pytest.raises(BackendUnavailable, match=f"permission denied on transit/decrypt/{KEY}"):
            await engine.decrypt(KEY, [(ciphertext, b"ctx")])
        # one re-login (token auth: the file is re-read and looked up), one retry
        assert len(paths_since(vault, before, f"transit/decrypt/{KEY}")) == 2
        assert len(paths_since(vault, before, "auth/token/lookup-self")) == 1


# --- batches and errors -------------------------------------------------------------------


async def test_batch_encrypt_is_one_request(vault: VaultDouble, tmp_path: Path) -> None:
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        await engine.ensure_key(KEY, AES)
        before = len(vault.requests)
        items = [(secrets.token_bytes(32), f"doc-{i}".encode()) for i in range(5)]
        ciphertexts = await engine.encrypt(KEY, items)
        [request] = vault.requests[before:]
    assert len(ciphertexts) == 5
    assert request.path.rstrip("/").endswith(f"transit/encrypt/{KEY}")
    assert request.body["batch_input"] == [
        {"plaintext": base64.b64encode(p).decode(), "context": base64.b64encode(c).decode()}
        for p, c in items
    ]


async def test_partial_batch_failure_names_the_item(vault: VaultDouble, tmp_path: Path) -> None:
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        await engine.ensure_key(KEY, AES)
        items = [(secrets.token_bytes(32), f"doc-{i}".encode()) for i in range(5)]
        ciphertexts = await engine.encrypt(KEY, items)
        pairs = [(c, ctx) for c, (_, ctx) in zip(ciphertexts, items, strict=True)]
        pairs[2] = (pairs[2][0], b"doc-wrong")
        before = len(vault.requests)
        with pytest.raises(CiphertextRejected, match="item 3 of 5") as caught:
            await engine.decrypt(KEY, pairs)
        assert len(vault.requests) == before + 1
    message = str(caught.value)
    for plaintext, context in items:
        assert base64.b64encode(plaintext).decode() not in message
        assert base64.b64encode(context).decode() not in message


async def test_partial_rewrap_failure_is_detected(vault: VaultDouble, tmp_path: Path) -> None:
    # Vault answers a rewrap batch 200 even when items failed: only the items say so.
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        await engine.ensure_key(KEY, AES)
        items = [(secrets.token_bytes(32), f"doc-{i}".encode()) for i in range(3)]
        ciphertexts = await engine.encrypt(KEY, items)
        pairs = [(c, ctx) for c, (_, ctx) in zip(ciphertexts, items, strict=True)]
        pairs[1] = (pairs[1][0], b"doc-wrong")
        with pytest.raises(CiphertextRejected, match="item 2 of 3"):
            await engine.rewrap(KEY, pairs)


async def test_signature_that_is_not_der_does_not_verify(
    vault: VaultDouble, tmp_path: Path
) -> None:
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        await engine.ensure_key("medrelay-sign", KeyType.ECDSA_P256)
        digest = hashlib.sha256(b"header").digest()
        signature = await engine.sign("medrelay-sign", digest)
        head, body = signature.rsplit(":", 1)
        der = bytearray(base64.b64decode(body))
        der[0] ^= 0xFF  # no longer an ASN.1 SEQUENCE: Vault answers 400, not valid=false
        broken = f"{head}:{base64.b64encode(bytes(der)).decode()}"
        assert await engine.verify("medrelay-sign", digest, broken) is False
        assert await engine.verify("medrelay-sign", digest, signature) is True


async def test_encrypt_under_a_missing_key_does_not_create_it(
    vault: VaultDouble, tmp_path: Path
) -> None:
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        with pytest.raises(KeyNotFound):
            await engine.encrypt("medrelay-never-made", [(b"p" * 32, b"ctx")])
    assert "medrelay-never-made" not in vault.key_names()


async def test_ensure_key_creates_derived_and_signing_keys_once(
    vault: VaultDouble, tmp_path: Path
) -> None:
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        await engine.ensure_key(KEY, AES)
        await engine.ensure_key("medrelay-sign", KeyType.ECDSA_P256)
        creates = [r for r in vault.requests if r.method == "POST" and "/keys/" in r.path]
        assert {r.body.get("type") for r in creates} == {"aes256-gcm96", "ecdsa-p256"}
        assert all(
            r.body.get("derived") is True for r in creates if r.body["type"] == "aes256-gcm96"
        )
        before = len(vault.requests)
        await engine.ensure_key(KEY, AES)
        assert len(vault.requests) == before  # remembered: no request on the hot path
    assert {KEY, "medrelay-sign"} <= set(vault.key_names())


async def test_malformed_signature_is_rejected_before_sending(
    vault: VaultDouble, tmp_path: Path
) -> None:
    async with opened(token_settings(vault, tmp_path, vault.root_token)) as engine:
        await engine.ensure_key("medrelay-sign", KeyType.ECDSA_P256)
        before = len(vault.requests)
        for bad in ("not-a-signature", "local:v1:AAAA", "vault:v0:AAAA"):
            with pytest.raises(CiphertextRejected):
                await engine.verify("medrelay-sign", b"d" * 32, bad)
        assert len(vault.requests) == before


# --- logs ---------------------------------------------------------------------------------


async def test_logs_hold_no_secrets(
    vault: VaultDouble, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = approle_settings(vault, tmp_path, ttl=3)
    assert settings.vault_secret_id_file is not None
    secret_id = settings.vault_secret_id_file.read_text().strip()
    plaintexts = [secrets.token_bytes(32) for _ in range(3)]
    contexts = [f"doc-{i}|org-a".encode() for i in range(3)]
    tokens: set[str] = {vault.root_token}
    async with opened(settings) as engine:
        await engine.ensure_key(KEY, AES)
        tokens.add(engine._session.client.token)
        ciphertexts = await engine.encrypt(KEY, list(zip(plaintexts, contexts, strict=True)))
        vault.expire_token(engine._session.client.token)  # force a re-login
        await engine.decrypt(KEY, list(zip(ciphertexts, contexts, strict=True)))
        tokens.add(engine._session.client.token)
        with pytest.raises(CiphertextRejected):
            await engine.decrypt(KEY, [(ciphertexts[0], b"wrong")])
        await _sleep_until(time.monotonic() + 2.5)  # one renewal
        tokens.add(engine._session.client.token)
    # The message, any traceback, and the record's `extra` fields (r.__dict__).
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__}" + (caplog.text if record.exc_info else "")
        for record in caplog.records
    )
    assert "vault" in logged  # something was logged
    forbidden = [secret_id, *tokens, *ciphertexts]
    for plaintext, context in zip(plaintexts, contexts, strict=True):
        forbidden += [plaintext.hex(), base64.b64encode(plaintext).decode()]
        forbidden += [base64.b64encode(context).decode(), context.decode()]
    for value in forbidden:
        assert value not in logged
