"""settings.CALLS is the call graph: a process may dial only what it lists.

The Helm chart's NetworkPolicies are checked against CALLS (tests/deploy), so CALLS must hold
every edge the code dials; `peer_address` refuses any other, and the e2e stacks, where every
process dials its peers for real, would fail on a missing one.
"""

from __future__ import annotations

import pytest

from medrelay.settings import ServiceSettings, load, peer_address


def test_an_undeclared_edge_is_refused() -> None:
    settings = load(
        ServiceSettings,
        env={"MEDRELAY_DATABASE_URL": "postgresql://h/db"},
        service="keys",
    )
    with pytest.raises(LookupError, match="keys does not call exchange"):
        settings.peer_address("exchange", env={})
    with pytest.raises(LookupError, match="gateway does not call keys"):
        peer_address("keys", {}, caller="gateway")


def test_a_declared_edge_gets_its_address() -> None:
    env = {"MEDRELAY_KEYS_ADDRESS": "medrelay-keys:7103"}
    assert peer_address("keys", env, caller="exchange") == "medrelay-keys:7103"
    assert peer_address("identity", {}, caller="gateway") == "127.0.0.1:7101"
