"""The keys service as its own process: a shredded wrap stays shredded across a real restart,
and a released key opens the same way after it."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from medrelay import tls
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import error_info_from_metadata
from medrelay.keys.v1 import keys_service_pb2 as pb
from medrelay.keys.v1 import keys_service_pb2_grpc as pb_grpc
from medrelay.pki import init_dev_pki
from medrelay.spiffe import PeerIdentity

from .test_identity_process import TRUST_DOMAIN, launch


def test_shred_survives_a_process_restart(tmp_path: Path, database_dsn: str) -> None:
    pki = init_dev_pki(
        tmp_path / "pki", TRUST_DOMAIN, services=["keys", "exchange"], admins=["admin"], systems={}
    )
    env = {"MEDRELAY_KEYS_KEY_PREFIX": "e2e-restart-"}
    exchange = pki.paths(PeerIdentity.service(TRUST_DOMAIN, "exchange"))

    def unwrap(target: str, org: str) -> pb.UnwrapDataKeyResponse:
        with grpc.secure_channel(target, tls.channel_credentials(exchange)) as channel:
            return pb_grpc.KeysServiceStub(channel).UnwrapDataKey(
                pb.UnwrapDataKeyRequest(document_id="restart-doc", organization_id=org),
                timeout=10,
            )

    process, target = launch("keys", tmp_path, database_dsn, pki, env)
    try:
        with grpc.secure_channel(target, tls.channel_credentials(exchange)) as channel:
            stub = pb_grpc.KeysServiceStub(channel)
            made = stub.GenerateDataKey(
                pb.GenerateDataKeyRequest(
                    document_id="restart-doc", organization_ids=["org-a", "org-b"]
                ),
                timeout=10,
            )
            stub.Shred(
                pb.ShredRequest(document_id="restart-doc", organization_id="org-b"), timeout=10
            )
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0

    process, target = launch("keys", tmp_path, database_dsn, pki, env)
    try:
        assert unwrap(target, "org-a").data_key == made.data_key
        with pytest.raises(grpc.RpcError) as caught:
            unwrap(target, "org-b")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        info = error_info_from_metadata(caught.value.trailing_metadata())  # type: ignore[attr-defined]
        assert info is not None
        assert info.reason == ErrorReason.Name(ErrorReason.ERROR_REASON_KEY_SHREDDED)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert (tmp_path / "keys-master.key").stat().st_mode & 0o777 == 0o600
