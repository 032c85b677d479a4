"""The keys service over mutual TLS (local backend): data keys made and released per second.

GenerateDataKey for 1 and 5 recipient organisations (a fresh document id per call: every call
makes a key, wraps it per organisation, stores the wraps and an audit record), and
UnwrapDataKey of one document (decrypt a wrap, audit the release), at 1, 4 and 16 callers.
The floor is the empty RPC on the same kind of server, called by the same exchange-service
channel in the same run.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from bench.floor_server import METHOD
from bench.harness import TIMEOUT, TRUST_DOMAIN, line, measure, service_beside_floor
from bench.load import run_load
from medrelay import tls
from medrelay.keys.v1 import keys_service_pb2 as pb
from medrelay.keys.v1 import keys_service_pb2_grpc as pb_grpc
from medrelay.spiffe import PeerIdentity

CALLERS = (1, 4, 16)
ORGANIZATIONS = [f"org-{n}" for n in range(5)]


async def bench_keys(work: Path, seconds: float, repeats: int) -> list[dict[str, object]]:
    """GenerateDataKey (1 and 5 recipients) and UnwrapDataKey beside the floor."""
    lines: list[dict[str, object]] = []
    async with service_beside_floor(work, "keys", ["keys", "exchange"], {}) as bench:
        pki, keys_target, floor_target = bench.pki, bench.target, bench.floor_target
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
    return lines
