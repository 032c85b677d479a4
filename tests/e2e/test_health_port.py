"""The plaintext health port every process can open for Kubernetes gRPC probes and the
container's HEALTHCHECK, and `medrelay health`, the command the image and `helm test` run.

Every service and the gateway run as their own processes, each with a health port; the
command is run as the container runs it, as a child process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.identity.v1 import identity_service_pb2 as identity_pb
from medrelay.identity.v1 import identity_service_pb2_grpc as identity_grpc
from medrelay.settings import SERVICES

from .exchange_stack import client_env, free_ports
from .gateway_stack import gateway_stack

PROCESSES = (*SERVICES, "gateway")


def medrelay_health(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medrelay.services.cli", "health", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**client_env(), **(env or {})},
        check=False,
    )


async def test_every_process_answers_on_its_health_port_and_nothing_else(
    tmp_path: Path, postgres: EmbeddedPostgres
) -> None:
    ports = dict(zip(PROCESSES, free_ports(len(PROCESSES)), strict=True))
    env = {
        name: {"MEDRELAY_HEALTH_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
        for name, port in ports.items()
    }
    async with gateway_stack(tmp_path, postgres, env=env) as stack:
        targets = [f"127.0.0.1:{ports[name]}" for name in PROCESSES]
        readyz = f"{stack.base_url}/readyz"
        ca = str(stack.services.pki.ca_path)

        # A proxy the pod inherits is not used: the probe checks the address itself.
        result = medrelay_health(
            *targets, readyz, "--ca", ca, env={"HTTPS_PROXY": "http://127.0.0.1:9"}
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == [f"{t}: SERVING" for t in [*targets, readyz]]

        # With no target, the command probes the port its own environment names (HEALTHCHECK).
        own = medrelay_health(env={"MEDRELAY_HEALTH_LISTEN_ADDRESS": f"0.0.0.0:{ports['keys']}"})
        assert own.returncode == 0 and own.stdout.strip() == f"127.0.0.1:{ports['keys']}: SERVING"

        # The plaintext port serves health only: no medrelay RPC, no reflection.
        with grpc.insecure_channel(targets[0]) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                identity_grpc.IdentityServiceStub(channel).Authorize(
                    identity_pb.AuthorizeRequest(practitioner_id="dr-a"), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED

        # A stopped service makes the command fail and say which.
        stack.services.stop("exchange")
        down = medrelay_health(*targets, readyz, "--ca", ca)
        assert down.returncode == 1
        lines = dict(line.split(": ", 1) for line in down.stdout.splitlines())
        assert lines[f"127.0.0.1:{ports['exchange']}"].startswith("unreachable")
        assert lines[readyz] == "HTTP 503"
        assert lines[f"127.0.0.1:{ports['identity']}"] == "SERVING"


def test_without_a_target_or_a_health_port_the_command_says_what_is_missing() -> None:
    result = medrelay_health()
    assert result.returncode == 2
    assert "MEDRELAY_HEALTH_LISTEN_ADDRESS" in result.stderr
