"""The keys service over mutual TLS (local backend): data keys made and released per second.

GenerateDataKey for 1 and 5 recipient organisations (a fresh document id per call: every call
makes a key, wraps it per organisation, stores the wraps and an audit record), and
UnwrapDataKey of one document (decrypt a wrap, audit the release). The floor is the empty RPC
on the same kind of server, called by the same exchange-service channel in the same run.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

from bench.floor_server import METHOD
from bench.harness import TIMEOUT, TRUST_DOMAIN, free_port, line, measure, wait_healthy
from bench.load import run_load
from medrelay import tls
from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.keys.v1 import keys_service_pb2 as pb
from medrelay.keys.v1 import keys_service_pb2_grpc as pb_grpc
from medrelay.pki import init_dev_pki
from medrelay.services.devstack import service_environment
from medrelay.spiffe import PeerIdentity

CALLERS = (1, 16)
ORGANIZATIONS = [f"org-{n}" for n in range(5)]


async def bench_keys(work: Path, seconds: float, repeats: int) -> list[dict[str, object]]:
    """GenerateDataKey (1 and 5 recipients) and UnwrapDataKey beside the floor."""
    pki = init_dev_pki(
        work / "pki",
        TRUST_DOMAIN,
        services=["identity", "keys", "exchange"],
        admins=["admin"],
        systems={},
    )
    postgres = EmbeddedPostgres(work / "pg")
    dsn = postgres.start()
    keys_port, floor_port = free_port(), free_port()
    env = service_environment(
        "keys",
        database_url=dsn,
        listen_address=f"127.0.0.1:{keys_port}",
        trust_domain=TRUST_DOMAIN,
        pki_dir=work / "pki",
        state_dir=work,
        extra={"MEDRELAY_LOG_LEVEL": "WARNING"},
    )
    floor_args = [str(work / "pki"), TRUST_DOMAIN, f"127.0.0.1:{floor_port}"]
    servers = [
        subprocess.Popen([sys.executable, "-m", "medrelay.services.keys"], env=env),  # noqa: ASYNC220
        subprocess.Popen([sys.executable, "-m", "bench.floor_server", *floor_args], env=env),  # noqa: ASYNC220
    ]
    lines: list[dict[str, object]] = []
    try:
        keys_target, floor_target = f"127.0.0.1:{keys_port}", f"127.0.0.1:{floor_port}"
        await wait_healthy(keys_target, pki)
        await wait_healthy(floor_target, pki)
        exchange = pki.paths(PeerIdentity.service(TRUST_DOMAIN, "exchange"))
        async with (
            tls.secure_channel(keys_target, exchange) as keys_channel,
            tls.secure_channel(floor_target, exchange) as floor_channel,
        ):
            stub = pb_grpc.KeysServiceStub(keys_channel)
            empty = floor_channel.unary_unary(METHOD, lambda b: b, lambda b: b)
            documents = itertools.count()

            def generate(recipients: int):  # type: ignore[no-untyped-def]
                async def call() -> object:
                    return await stub.GenerateDataKey(
                        pb.GenerateDataKeyRequest(
                            document_id=f"doc-{next(documents)}",
                            organization_ids=ORGANIZATIONS[:recipients],
                        ),
                        timeout=TIMEOUT,
                    )

                return call

            unwrap_request = pb.UnwrapDataKeyRequest(document_id="doc-0", organization_id="org-0")

            async def unwrap() -> object:
                return await stub.UnwrapDataKey(unwrap_request, timeout=TIMEOUT)

            async def floor() -> object:
                return await empty(b"", timeout=TIMEOUT)

            await run_load(generate(5), 4, 1.0)  # warm-up: keys created, caches, connections
            await run_load(unwrap, 4, 1.0)
            await run_load(floor, 4, 1.0)
            subjects = [
                ("keys.GenerateDataKey", generate(1), {"recipients": 1}),
                ("keys.GenerateDataKey", generate(5), {"recipients": 5}),
                ("keys.UnwrapDataKey", unwrap, {}),
            ]
            for callers in CALLERS:
                floor_result = await measure(floor, callers, seconds, repeats)
                for name, call, extra in subjects:
                    result = await measure(call, callers, seconds, repeats)
                    lines.append(
                        line(name, result, floor_result, backend="local", **extra)  # type: ignore[arg-type]
                    )
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=20)
        postgres.stop()
    return lines
