"""What the Helm chart renders, for its defaults and every value set in ci/: hardened pods,
probes and resources everywhere, settings the processes accept, certificates that name what
is dialled, and NetworkPolicies that allow exactly the call graph in settings.CALLS.

The renders are conftest.py's `rendered`, made once a session as scripts/check_chart.py makes
them (release and namespace medrelay); test_chart_checks.py lints the same value sets and
checks them against the Kubernetes schemas and checkov. Other values go through `render_chart`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from helm_python.chart import Chart

from medrelay.services.consent.settings import ConsentSettings
from medrelay.services.exchange.settings import ExchangeSettings
from medrelay.services.gateway.settings import DEFAULT_GATEWAY_PORT, GatewaySettings
from medrelay.services.keys.settings import KeysSettings
from medrelay.settings import CALLS, DEFAULT_PORTS, SERVICES, ServiceSettings, load
from tests.deploy.chart import CHART_DIR, HelmError, check_chart

RELEASE = check_chart.RELEASE
# The prefix of every object name: the release's name alone, as it contains the chart's.
FULLNAME = RELEASE
PROCESSES = (*SERVICES, "gateway")
PORTS = {**DEFAULT_PORTS, "gateway": DEFAULT_GATEWAY_PORT}
HEALTH_PORT = 8081
VALUE_SETS = {value_set.name: value_set for value_set in check_chart.value_sets(CHART_DIR)}
POD_KINDS = {"Deployment", "Job", "Pod"}

Objects = list[dict[str, Any]]


@pytest.fixture(scope="module")
def bodies(rendered: Mapping[str, list[Any]]) -> dict[str, Objects]:
    """Every value set's objects as dicts; a value set that did not render fails the test."""
    return {name: [obj.body for obj in rendered[name]] for name in VALUE_SETS}


def effective_values(chart: Chart, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values a release gets: the chart's defaults with `values` on top."""
    return chart.merge_values(dict(values))


@pytest.fixture(scope="module")
def values(helm_chart: Chart) -> dict[str, dict[str, Any]]:
    return {name: effective_values(helm_chart, v.values()) for name, v in VALUE_SETS.items()}


def each(bodies: dict[str, Objects], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for value_set, objects in bodies.items():
        for obj in objects:
            if obj["kind"] == kind:
                yield value_set, obj


def component(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]
    return spec if obj["kind"] == "Pod" else spec["template"]["spec"]


# -- pods ---------------------------------------------------------------------------------


def test_every_value_set_renders_every_process_it_enables(
    bodies: dict[str, Objects], values: dict[str, dict[str, Any]]
) -> None:
    deployments = {
        name: sorted(component(d) for d in objects if d["kind"] == "Deployment")
        for name, objects in bodies.items()
    }
    assert deployments["default"] == sorted(PROCESSES)
    for name, found in deployments.items():
        assert found == sorted(p for p in PROCESSES if values[name][p]["enabled"]), name


def test_every_container_runs_as_non_root_with_a_read_only_root_filesystem(
    bodies: dict[str, Objects],
) -> None:
    checked = 0
    for objects in bodies.values():
        for obj in objects:
            if obj["kind"] not in POD_KINDS:
                continue
            spec = pod_spec(obj)
            pod = spec.get("securityContext", {})
            assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
            for container in spec["containers"] + spec.get("initContainers", []):
                context = {**pod, **container.get("securityContext", {})}
                where = f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}"
                assert context.get("runAsNonRoot") is True, where
                assert context.get("runAsUser", 0) > 0, where
                assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
                assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
                assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
                assert context["seccompProfile"]["type"] == "RuntimeDefault", where
                assert {"requests", "limits"} <= set(container["resources"]), where
                checked += 1
    assert checked >= 25


def test_every_deployment_has_grpc_probes_and_resources(bodies: dict[str, Objects]) -> None:
    for value_set, deployment in each(bodies, "Deployment"):
        name = component(deployment)
        [container] = pod_spec(deployment)["containers"]
        where = f"{value_set}: {name}"
        assert container["args"] == ["serve", name], where
        for probe in ("startupProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": HEALTH_PORT}, where
        readiness = container["readinessProbe"]
        if name == "gateway":
            # Ready only when the services behind it are: the gateway's own /readyz over HTTPS.
            assert readiness["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
        else:
            assert readiness["grpc"] == {"port": HEALTH_PORT}, where
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), where
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {
            ("https" if name == "gateway" else "grpc"): PORTS[name],
            "health": HEALTH_PORT,
        }


# -- settings -----------------------------------------------------------------------------


def settings_classes(name: str) -> list[type[Any]]:
    extra = {
        "consent": [ConsentSettings],
        "keys": [KeysSettings],
        "exchange": [ExchangeSettings],
    }.get(name, [])
    return [GatewaySettings] if name == "gateway" else [ServiceSettings, *extra]


def known_variables(name: str) -> set[str]:
    names = {f.metadata["env"] for cls in settings_classes(name) for f in fields(cls)}
    return names | {f"MEDRELAY_{peer.upper()}_ADDRESS" for peer in CALLS[name]}


def test_every_config_map_is_accepted_by_its_process_settings(
    bodies: dict[str, Objects], tmp_path: Path
) -> None:
    """The processes' own loaders parse the rendered settings: a misspelled variable or a
    value the process would refuse at start fails here, not in a pod."""
    url = tmp_path / "url"
    url.write_text("postgresql://medrelay@db/medrelay")
    for value_set, config_map in each(bodies, "ConfigMap"):
        name = component(config_map)
        env = dict(config_map["data"])
        assert set(env) <= known_variables(name), f"{value_set}: {name}: unknown variables"
        assert {k for k in env if k.endswith("_ADDRESS") and k != "MEDRELAY_LISTEN_ADDRESS"} - {
            "MEDRELAY_HEALTH_LISTEN_ADDRESS"
        } == {f"MEDRELAY_{peer.upper()}_ADDRESS" for peer in CALLS[name]}
        if "MEDRELAY_DATABASE_URL_FILE" in env:
            env["MEDRELAY_DATABASE_URL_FILE"] = str(url)
        for cls in settings_classes(name):
            overrides = {"service": name} if cls is ServiceSettings else {}
            if cls is KeysSettings and env.get("MEDRELAY_KEYS_BACKEND") == "local":
                env["MEDRELAY_KEYS_MASTER_KEY_FILE"] = str(tmp_path / "master-key")
            load(cls, env=env, **overrides)


def test_numbers_in_config_reach_the_process_as_written(
    render_chart: Callable[..., list[Any]],
) -> None:
    """Helm reads every number in a values file as a float, which toString writes as 1e+09."""
    config = {
        "MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES": 1073741824,
        "MEDRELAY_SHUTDOWN_GRACE_SECONDS": 2.5,
    }
    objects = render_chart({"exchange": {"config": config}})
    [data] = [
        o.body["data"] for o in objects if o.kind == "ConfigMap" and component(o.body) == "exchange"
    ]
    assert data["MEDRELAY_EXCHANGE_MAX_DOCUMENT_BYTES"] == "1073741824"
    assert data["MEDRELAY_SHUTDOWN_GRACE_SECONDS"] == "2.5"
    settings = load(ExchangeSettings, env=data)
    assert settings.max_document_bytes == 1073741824


def test_every_dialled_address_is_in_the_callee_certificate(
    bodies: dict[str, Objects], values: dict[str, dict[str, Any]]
) -> None:
    """Clients check the server's DNS names: each MEDRELAY_<PEER>_ADDRESS host must be one of
    them, and the port the callee's Service serves. (With tls.source=existingSecrets the
    certificates are the operator's.)"""
    checked = 0
    for value_set, objects in bodies.items():
        if values[value_set]["tls"]["source"] != "certManager":
            continue
        by_kind = {value_set: objects}
        certificates = {
            component(c): c["spec"]
            for _, c in each(by_kind, "Certificate")
            if c["metadata"]["labels"].get("app.kubernetes.io/component") in PROCESSES
        }
        services = {component(s): s for _, s in each(by_kind, "Service")}
        for _, config_map in each(by_kind, "ConfigMap"):
            for peer in CALLS[component(config_map)]:
                host, port = config_map["data"][f"MEDRELAY_{peer.upper()}_ADDRESS"].rsplit(":", 1)
                assert host in certificates[peer]["dnsNames"], value_set
                assert host == services[peer]["metadata"]["name"], value_set
                assert int(port) in {p["port"] for p in services[peer]["spec"]["ports"]}
                checked += 1
        trust_domain = values[value_set]["trustDomain"]
        for name, spec in certificates.items():
            assert spec["uris"] == [f"spiffe://{trust_domain}/service/{name}"]
            assert {"server auth", "client auth"} <= set(spec["usages"])
    assert checked >= sum(len(peers) for peers in CALLS.values())


def test_keys_with_vault_logs_in_with_a_vault_audience_token(bodies: dict[str, Objects]) -> None:
    objects = bodies["certmanager-vault-cloudnativepg-values"]
    [keys] = [d for d in objects if d["kind"] == "Deployment" and component(d) == "keys"]
    [config] = [c for c in objects if c["kind"] == "ConfigMap" and component(c) == "keys"]
    volumes = {v["name"]: v for v in pod_spec(keys)["volumes"]}
    [source] = volumes["vault-token"]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "vault"
    assert config["data"]["MEDRELAY_VAULT_AUTH"] == "kubernetes"
    assert config["data"]["MEDRELAY_VAULT_KUBERNETES_TOKEN_FILE"].endswith("/token")
    assert "master-key" not in volumes


def test_the_helm_test_pod_checks_every_process(bodies: dict[str, Objects]) -> None:
    objects = bodies["default"]
    [pod] = [o for o in objects if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    services = {component(s): s for s in objects if s["kind"] == "Service"}
    [container] = pod["spec"]["containers"]
    targets = [a for a in container["args"] if ":" in a and not a.startswith("/")]
    [gateway_port] = [
        p["port"] for p in services["gateway"]["spec"]["ports"] if p["name"] == "https"
    ]
    assert targets == [
        *(f"{services[name]['metadata']['name']}:{HEALTH_PORT}" for name in PROCESSES),
        f"https://{services['gateway']['metadata']['name']}:{gateway_port}/readyz",
    ]
    assert container["args"][0] == "health"


# -- wrong values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"identity": {"replicaCount": -1}}, "/identity/replicaCount': minimum: got -1"),
        ({"keys": {"backend": "kms"}}, "/keys/backend': value must be one of 'local', 'vault'"),
        ({"identiy": {"enabled": True}}, "additional properties 'identiy' not allowed"),
        ({"exchange": {"autoscaling": {"maxReplica": 3}}}, "'maxReplica' not allowed"),
        ({"tls": {"source": "letsencrypt"}}, "/tls/source'"),
        ({"image": {"digest": "latest"}}, "/image/digest'"),
        (
            {"exchange": {"config": {"RETENTION": "30d"}}},
            "at '/exchange/config': additional properties 'RETENTION' not allowed",
        ),
        ({"keys": {"backend": "vault"}}, "keys.vault.address: required with keys.backend=vault"),
        ({"identity": {"enabled": False}}, "identity.enabled: consent calls identity"),
        (
            {"tls": {"source": "existingSecrets"}},
            "tls.existingSecrets.identity: required with tls.source=existingSecrets",
        ),
        (
            {"gateway": {"config": {"MEDRELAY_DATABASE_URL": "postgresql://medrelay:pw@db/m"}}},
            "gateway.config.MEDRELAY_DATABASE_URL: the URL holds PostgreSQL's password",
        ),
        (
            {"keys": {"podDisruptionBudget": {"maxUnavailable": None}}},
            "keys.podDisruptionBudget: maxUnavailable and minAvailable are both null",
        ),
        (
            {"gateway": {"autoscaling": {"minReplicas": 9, "maxReplicas": 3}}},
            "gateway.autoscaling: minReplicas (9) is above maxReplicas (3)",
        ),
    ],
)
def test_a_wrong_value_fails_rendering_with_a_message(
    render_chart: Callable[..., list[Any]], values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmError) as refused:
        render_chart(values)
    assert message in str(refused.value)


# -- network policies ---------------------------------------------------------------------

#: Destinations outside the release, by the port they listen on. A rule without `to`, or with
#: an ipBlock or namespaceSelector peer, reaches them; our pods never listen on these ports.
EXTERNAL_PORTS = {"postgresql": 5432, "vault": 8200, "dns": 53, "otel": 4317}
OUTSIDE = "outside"  # a client outside the namespace: the ingress controller, a LoadBalancer's


def labels_of(pod: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "medrelay",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": pod,
    }


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def peer_matches(peer: Mapping[str, Any], target: str, cnpg: str) -> bool:
    """Does a NetworkPolicy peer reach `target` (one of our pods, or an external name)?"""
    external = target in EXTERNAL_PORTS or target == OUTSIDE
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return external
    if target == "postgresql":
        return selects(peer["podSelector"], {"cnpg.io/cluster": cnpg})
    return not external and selects(peer["podSelector"], labels_of(target))


def rule_allows(rule: Mapping[str, Any], direction: str, target: str, port: int, cnpg: str) -> bool:
    # Kubernetes reads a missing or empty list of ports or peers as "all of them".
    ports = rule.get("ports")
    if ports and port not in {p["port"] for p in ports}:
        return False
    peers = rule.get(direction)
    return not peers or any(peer_matches(peer, target, cnpg) for peer in peers)


def allowed(policies: Objects, pod: str, direction: str, target: str, port: int, cnpg: str) -> bool:
    """Kubernetes' semantics: a pod no policy selects for a direction is open that way; one
    that is selected is open only where some rule of some selecting policy allows."""
    kind = "Ingress" if direction == "from" else "Egress"
    key = "ingress" if direction == "from" else "egress"
    selecting = [
        p["spec"]
        for p in policies
        if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels_of(pod))
    ]
    if not selecting:
        return True
    return any(
        rule_allows(rule, direction, target, port, cnpg)
        for spec in selecting
        for rule in spec.get(key) or []
    )


def connections(objects: Objects) -> set[tuple[str, str, int]]:
    """Every (source, destination, port) the NetworkPolicies allow, among the pods rendered
    (the processes, the migration Job's, the test pod), the external services and a client
    outside."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    clusters = [o["metadata"]["name"] for o in objects if o["kind"] == "Cluster"]
    cnpg = clusters[0] if clusters else ""
    processes = [component(d) for d in objects if d["kind"] == "Deployment"]
    ours = [*processes, *(component(o) for o in objects if o["kind"] in {"Job", "Pod"})]
    listening = {name: [PORTS[name], HEALTH_PORT] for name in processes}
    destinations = [
        *((name, port) for name, ports in listening.items() for port in ports),
        *EXTERNAL_PORTS.items(),
    ]
    found = set()
    for source in [*ours, OUTSIDE]:
        for destination, port in destinations:
            if source == destination or (source == OUTSIDE and destination in EXTERNAL_PORTS):
                continue
            egress = source == OUTSIDE or allowed(policies, source, "to", destination, port, cnpg)
            ingress = destination in EXTERNAL_PORTS or allowed(
                policies, destination, "from", source, port, cnpg
            )
            if egress and ingress:
                found.add((source, destination, port))
    return found


def expected_connections(values: Mapping[str, Any]) -> set[tuple[str, str, int]]:
    """The call graph from the services' own settings, and the infrastructure every pod needs,
    for the processes, migration Job and test pod that the values enable."""
    processes = [name for name in PROCESSES if values[name]["enabled"]]
    # ServiceSettings requires MEDRELAY_DATABASE_URL: every service reads PostgreSQL.
    database_users = [name for name in processes if name in SERVICES]
    migrate = ["migrate"] if values["migrations"]["enabled"] else []
    test = ["test"] if values["tests"]["enabled"] else []
    vault = "keys" in processes and values["keys"]["backend"] == "vault"
    assert any(f.metadata["env"] == "MEDRELAY_VAULT_ADDR" for f in fields(KeysSettings))
    otel = bool(values["telemetry"]["otlpEndpoint"])
    edges = {(caller, callee, PORTS[callee]) for caller in processes for callee in CALLS[caller]}
    edges |= {(name, "postgresql", 5432) for name in [*database_users, *migrate]}
    edges |= {("keys", "vault", 8200)} if vault else set()
    if "gateway" in processes and values["networkPolicy"]["gatewayFrom"]:
        edges.add((OUTSIDE, "gateway", PORTS["gateway"]))
    admitted = values["networkPolicy"]["grpcFrom"]
    edges |= {(OUTSIDE, name, PORTS[name]) for name in processes if admitted.get(name)}
    edges |= {(name, "dns", 53) for name in [*processes, *migrate, *test]}
    edges |= {(name, "otel", 4317) for name in processes} if otel else set()
    for name in test:
        edges |= {(name, process, HEALTH_PORT) for process in processes}
        edges |= {(name, "gateway", PORTS["gateway"])} if "gateway" in processes else set()
    return edges


def assert_exactly_the_call_graph(objects: Objects, values: Mapping[str, Any]) -> None:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if not values["networkPolicy"]["enabled"]:
        assert policies == []
        return
    assert len(policies) >= len([p for p in PROCESSES if values[p]["enabled"]])
    found = connections(objects)
    expected = expected_connections(values)
    assert found - expected == set(), "allowed but not in the call graph"
    assert expected - found == set(), "in the call graph but not allowed"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_network_policies_allow_exactly_the_call_graph(
    bodies: dict[str, Objects], values: dict[str, dict[str, Any]], value_set: str
) -> None:
    assert_exactly_the_call_graph(bodies[value_set], values[value_set])


@pytest.mark.parametrize(
    "overrides",
    [
        {"tests": {"enabled": False}},
        {"migrations": {"enabled": False}},
        {"gateway": {"enabled": False}},
        {"networkPolicy": {"gatewayFrom": []}},
        {name: {"enabled": False} for name in ("consent", "exchange", "gateway")},
        {"keys": {"backend": "vault", "vault": {"address": "https://vault:8200"}}},
        {
            "telemetry": {"otlpEndpoint": "http://otel:4317"},
            "database": {"source": "cloudnativepg"},
        },
    ],
    ids=[
        "no-tests",
        "no-migrations",
        "no-gateway",
        "no-gatewayFrom",
        "identity-keys",
        "vault",
        "otel-cnpg",
    ],
)
def test_network_policies_follow_the_call_graph_for_other_values(
    helm_chart: Chart, render_chart: Callable[..., list[Any]], overrides: dict[str, Any]
) -> None:
    objects = [obj.body for obj in render_chart(overrides)]
    assert_exactly_the_call_graph(objects, effective_values(helm_chart, overrides))


def test_the_call_graph_check_can_fail(
    bodies: dict[str, Objects], values: dict[str, dict[str, Any]]
) -> None:
    """An extra rule (identity may call exchange) or a lost one shows up as a difference."""
    objects = bodies["default"]
    found = connections(objects)
    expected = expected_connections(values["default"])
    assert ("identity", "exchange", PORTS["exchange"]) not in found
    opened = [o for o in objects if o["kind"] == "NetworkPolicy"] + [
        {
            "kind": "NetworkPolicy",
            "spec": {
                "podSelector": {"matchLabels": labels_of("exchange")},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": labels_of("identity")}}]}],
            },
        },
        {
            "kind": "NetworkPolicy",
            "spec": {
                "podSelector": {"matchLabels": labels_of("identity")},
                "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": PORTS["exchange"]}]}],
            },
        },
    ]
    widened = connections([o for o in objects if o["kind"] != "NetworkPolicy"] + opened)
    assert widened - expected == {("identity", "exchange", PORTS["exchange"])}
    narrowed = connections(
        [
            o
            for o in objects
            if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-keys"))
        ]
    )
    # Without its own policy, keys is still under the default deny: cut off both ways.
    assert expected - narrowed == {
        (caller, "keys", PORTS["keys"]) for caller in PROCESSES if "keys" in CALLS[caller]
    } | {("test", "keys", HEALTH_PORT), ("keys", "dns", 53), ("keys", "postgresql", 5432)}
    assert found == expected


def test_external_postgresql_is_reached_only_in_its_address_range(
    bodies: dict[str, Objects],
) -> None:
    objects = bodies["existing-secrets-external-postgresql-values"]
    [exchange] = [
        o
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-exchange")
    ]
    [database] = [
        r for r in exchange["spec"]["egress"] if {"port": 5432, "protocol": "TCP"} in r["ports"]
    ]
    [peer] = database["to"]
    assert ipaddress.ip_network(peer["ipBlock"]["cidr"]) == ipaddress.ip_network("10.40.0.0/24")


def test_the_chart_holds_no_secret_and_keeps_the_database(bodies: dict[str, Objects]) -> None:
    """Secrets (the master key, the database URL) are the operator's: a chart-made master key
    would be replaced by a new random one by any tool that renders offline (helm template,
    Argo CD), and every document would be lost. The CloudNativePG Cluster outlives an
    uninstall, since the operator deletes its volumes with it."""
    assert not [o for objects in bodies.values() for o in objects if o["kind"] == "Secret"]
    [keys] = [d for _, d in each({"d": bodies["default"]}, "Deployment") if component(d) == "keys"]
    volumes = {v["name"]: v for v in pod_spec(keys)["volumes"]}
    assert volumes["master-key"]["secret"]["secretName"] == f"{FULLNAME}-keys-master-key"
    assert volumes["master-key"]["secret"]["defaultMode"] == 0o440  # root-owned, fsGroup reads
    [cluster] = [c for _, c in each(bodies, "Cluster")]
    assert cluster["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
