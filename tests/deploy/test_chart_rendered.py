"""What the Helm chart renders, for its defaults and every value set in ci/: hardened pods,
probes and resources everywhere, settings the processes accept, certificates that name what
is dialled, and NetworkPolicies that allow exactly the call graph in settings.CALLS.

Rendering is Helm v4's own engine (helm-python-sdk, offline); scripts/check_chart.py adds
lint, the Kubernetes schemas and checkov on the same renders.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_python.chart import Chart
from helm_python.errors import HelmError

from medrelay.services.consent.settings import ConsentSettings
from medrelay.services.exchange.settings import ExchangeSettings
from medrelay.services.gateway.settings import DEFAULT_GATEWAY_PORT, GatewaySettings
from medrelay.services.keys.settings import KeysSettings
from medrelay.settings import CALLS, DEFAULT_PORTS, SERVICES, ServiceSettings, load

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "medrelay"
RELEASE, NAMESPACE = "mr", "health"
PROCESSES = (*SERVICES, "gateway")
PORTS = {**DEFAULT_PORTS, "gateway": DEFAULT_GATEWAY_PORT}
HEALTH_PORT = 8081
VALUE_SETS = ["default", *sorted(p.stem for p in (CHART / "ci").glob("*.yaml"))]
POD_KINDS = {"Deployment", "Job", "Pod"}

Objects = list[dict[str, Any]]


def render(values: Mapping[str, Any]) -> Objects:
    with Chart.load(CHART) as chart:
        manifests = chart.render(dict(values), name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        document
        for path, text in manifests.items()
        if path.endswith(".yaml")
        for document in yaml.safe_load_all(text)
        if document
    ]


def values_of(value_set: str) -> dict[str, Any]:
    if value_set == "default":
        return {}
    loaded: dict[str, Any] = yaml.safe_load((CHART / "ci" / f"{value_set}.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def rendered() -> dict[str, Objects]:
    return {name: render(values_of(name)) for name in VALUE_SETS}


def each(rendered: dict[str, Objects], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for value_set, objects in rendered.items():
        for obj in objects:
            if obj["kind"] == kind:
                yield value_set, obj


def component(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]
    return spec if obj["kind"] == "Pod" else spec["template"]["spec"]


# -- pods ---------------------------------------------------------------------------------


def test_every_value_set_renders_every_process_it_enables(rendered: dict[str, Objects]) -> None:
    deployments = {
        name: sorted(component(d) for d in objects if d["kind"] == "Deployment")
        for name, objects in rendered.items()
    }
    assert deployments["default"] == sorted(PROCESSES)
    assert deployments["minimal-values"] == sorted(SERVICES)
    assert all(len(objects) > 20 for objects in rendered.values())


def test_every_container_runs_as_non_root_with_a_read_only_root_filesystem(
    rendered: dict[str, Objects],
) -> None:
    checked = 0
    for objects in rendered.values():
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


def test_every_deployment_has_grpc_probes_and_resources(rendered: dict[str, Objects]) -> None:
    for value_set, deployment in each(rendered, "Deployment"):
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
    rendered: dict[str, Objects], tmp_path: Path
) -> None:
    """The processes' own loaders parse the rendered settings: a misspelled variable or a
    value the process would refuse at start fails here, not in a pod."""
    url = tmp_path / "url"
    url.write_text("postgresql://medrelay@db/medrelay")
    for value_set, config_map in each(rendered, "ConfigMap"):
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


def test_every_dialled_address_is_in_the_callee_certificate(rendered: dict[str, Objects]) -> None:
    """Clients check the server's DNS names: each MEDRELAY_<PEER>_ADDRESS host must be one of
    them, and the port the callee's Service serves."""
    value_set = "default"
    certificates = {
        component(c): c["spec"]
        for _, c in each({value_set: rendered[value_set]}, "Certificate")
        if "app.kubernetes.io/component" in c["metadata"]["labels"] and component(c) in PROCESSES
    }
    services = {component(s): s for _, s in each({value_set: rendered[value_set]}, "Service")}
    for _, config_map in each({value_set: rendered[value_set]}, "ConfigMap"):
        for peer in CALLS[component(config_map)]:
            host, port = config_map["data"][f"MEDRELAY_{peer.upper()}_ADDRESS"].rsplit(":", 1)
            assert host in certificates[peer]["dnsNames"]
            assert host == services[peer]["metadata"]["name"]
            assert int(port) in {p["port"] for p in services[peer]["spec"]["ports"]}
    for name, spec in certificates.items():
        assert spec["uris"] == [f"spiffe://medrelay.local/service/{name}"]
        assert {"server auth", "client auth"} <= set(spec["usages"])


def test_keys_with_vault_logs_in_with_a_vault_audience_token(rendered: dict[str, Objects]) -> None:
    objects = rendered["certmanager-vault-cloudnativepg-values"]
    [keys] = [d for d in objects if d["kind"] == "Deployment" and component(d) == "keys"]
    [config] = [c for c in objects if c["kind"] == "ConfigMap" and component(c) == "keys"]
    volumes = {v["name"]: v for v in pod_spec(keys)["volumes"]}
    [source] = volumes["vault-token"]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "vault"
    assert config["data"]["MEDRELAY_VAULT_AUTH"] == "kubernetes"
    assert config["data"]["MEDRELAY_VAULT_KUBERNETES_TOKEN_FILE"].endswith("/token")
    assert "master-key" not in volumes


def test_the_helm_test_pod_checks_every_process(rendered: dict[str, Objects]) -> None:
    [pod] = [p for _, p in each({"d": rendered["default"]}, "Pod")]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [container] = pod["spec"]["containers"]
    targets = [a for a in container["args"] if ":" in a and not a.startswith("/")]
    assert targets == [
        *(f"{RELEASE}-medrelay-{name}:{HEALTH_PORT}" for name in PROCESSES),
        f"https://{RELEASE}-medrelay-gateway:443/readyz",
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
            {"gateway": {"autoscaling": {"minReplicas": 9, "maxReplicas": 3}}},
            "gateway.autoscaling: minReplicas (9) is above maxReplicas (3)",
        ),
    ],
)
def test_a_wrong_value_fails_rendering_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError) as refused:
        render(values)
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
    ports = rule.get("ports")
    if ports is not None and port not in {p["port"] for p in ports}:
        return False
    peers = rule.get(direction)
    return peers is None or any(peer_matches(peer, target, cnpg) for peer in peers)


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
    """Every (source, destination, port) the NetworkPolicies allow, among our pods, the
    external services and a client outside."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    clusters = [o["metadata"]["name"] for o in objects if o["kind"] == "Cluster"]
    cnpg = clusters[0] if clusters else ""
    processes = [component(d) for d in objects if d["kind"] == "Deployment"]
    ours = [*processes, "migrate", "test"]
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


def expected_connections(objects: Objects, values: Mapping[str, Any]) -> set[tuple[str, str, int]]:
    """The call graph from the services' own settings, and the infrastructure every pod needs."""
    processes = [component(d) for d in objects if d["kind"] == "Deployment"]
    database_users = [
        name for name in processes if name in SERVICES
    ]  # ServiceSettings requires MEDRELAY_DATABASE_URL: every service reads PostgreSQL
    vault = values.get("keys", {}).get("backend") == "vault"
    assert any(f.metadata["env"] == "MEDRELAY_VAULT_ADDR" for f in fields(KeysSettings))
    otel = bool(values.get("telemetry", {}).get("otlpEndpoint"))
    edges = {(caller, callee, PORTS[callee]) for caller in processes for callee in CALLS[caller]}
    edges |= {(name, "postgresql", 5432) for name in [*database_users, "migrate"]}
    edges |= {("keys", "vault", 8200)} if vault else set()
    edges |= {(OUTSIDE, "gateway", PORTS["gateway"])} if "gateway" in processes else set()
    admitted = values.get("networkPolicy", {}).get("grpcFrom", {})
    edges |= {(OUTSIDE, name, PORTS[name]) for name, peers in admitted.items() if peers}
    edges |= {(name, "dns", 53) for name in [*processes, "migrate", "test"]}
    edges |= {(name, "otel", 4317) for name in processes} if otel else set()
    edges |= {("test", name, HEALTH_PORT) for name in processes}
    edges |= {("test", "gateway", PORTS["gateway"])} if "gateway" in processes else set()
    return edges


@pytest.mark.parametrize("value_set", [v for v in VALUE_SETS if v != "minimal-values"])
def test_network_policies_allow_exactly_the_call_graph(
    rendered: dict[str, Objects], value_set: str
) -> None:
    objects = rendered[value_set]
    assert sum(o["kind"] == "NetworkPolicy" for o in objects) >= len(PROCESSES)
    found = connections(objects)
    expected = expected_connections(objects, values_of(value_set))
    assert found - expected == set(), "allowed but not in the call graph"
    assert expected - found == set(), "in the call graph but not allowed"


def test_the_call_graph_check_can_fail(rendered: dict[str, Objects]) -> None:
    """An extra rule (identity may call exchange) or a lost one shows up as a difference."""
    objects = [dict(o) for o in rendered["default"]]
    found = connections(objects)
    expected = expected_connections(objects, {})
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
    rendered: dict[str, Objects],
) -> None:
    objects = rendered["existing-secrets-external-postgresql-values"]
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


def test_the_chart_holds_no_secret_and_keeps_the_database(rendered: dict[str, Objects]) -> None:
    """Secrets (the master key, the database URL) are the operator's: a chart-made master key
    would be replaced by a new random one by any tool that renders offline (helm template,
    Argo CD), and every document would be lost. The CloudNativePG Cluster outlives an
    uninstall, since the operator deletes its volumes with it."""
    assert not [o for objects in rendered.values() for o in objects if o["kind"] == "Secret"]
    [keys] = [
        d for _, d in each({"d": rendered["default"]}, "Deployment") if component(d) == "keys"
    ]
    volumes = {v["name"]: v for v in pod_spec(keys)["volumes"]}
    assert volumes["master-key"]["secret"]["secretName"] == f"{RELEASE}-medrelay-keys-master-key"
    assert volumes["master-key"]["secret"]["defaultMode"] == 0o440  # root-owned, fsGroup reads
    [cluster] = [c for _, c in each(rendered, "Cluster")]
    assert cluster["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
