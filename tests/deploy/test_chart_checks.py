"""`make chart` as tests: the chart renders, lints strictly, matches the Kubernetes schemas and
passes checkov for its defaults and every ci/ value set; and the checks themselves catch what
they are there for, shown on small charts written here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from helm_python.chart import Chart

from tests.deploy.chart import (
    CHART_DIR,
    CHECKOV,
    HelmRenderError,
    HelmValuesError,
    RenderedObject,
    check_chart,
    make_renderer,
)

VALUE_SETS = [value_set.name for value_set in check_chart.value_sets(CHART_DIR)]


def _rendering(chart_renderings: tuple[dict[str, Any], dict[str, str]], name: str) -> Any:
    renderings, errors = chart_renderings
    assert name not in errors, f"value set {name} did not render: {errors[name]}"
    return renderings[name]


def _require_checkov() -> None:
    if not CHECKOV.exists():
        pytest.fail(f"no checkov at {CHECKOV}: run `make chart` (or `make test`) to install it")


# --- the chart ---------------------------------------------------------------------------


def test_the_chart_has_its_ci_value_sets(chart_dir: Path) -> None:
    assert len(VALUE_SETS) >= 4, f"value sets in {chart_dir / 'ci'}: {VALUE_SETS[1:]}"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_renders(chart_renderings: tuple[dict[str, Any], dict[str, str]], name: str) -> None:
    assert _rendering(chart_renderings, name).objects, f"value set {name} renders no object"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lints_strictly(chart_dir: Path, name: str) -> None:
    value_set = next(v for v in check_chart.value_sets(chart_dir) if v.name == name)
    assert check_chart.lint_messages(chart_dir, value_set.values()) == []


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_matches_the_kubernetes_schemas(
    chart_renderings: tuple[dict[str, Any], dict[str, str]], name: str
) -> None:
    rendering = _rendering(chart_renderings, name)
    problems = [
        f"{obj}: {message}"
        for obj in rendering.objects
        for message in check_chart.schema_errors(obj)
    ]
    problems += check_chart.duplicates(rendering.objects)
    assert problems == [], "\n".join(problems)


def test_checkov_fails_no_check_that_the_chart_does_not_justify(
    chart_renderings: tuple[dict[str, Any], dict[str, str]],
    helm_chart: Chart,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """checkov on the manifests of every value set that rendered, one run per value set."""
    _require_checkov()
    renderings, _ = chart_renderings
    assert renderings, "no value set rendered"
    out = tmp_path_factory.mktemp("chart") / "manifests"
    files = check_chart.write_manifests(out, renderings.values())
    skips, malformed = check_chart.justifications(helm_chart.templates)
    result = check_chart.classify(check_chart.run_checkov(CHECKOV, out), files, skips)
    problems = malformed + [
        str(p) for p in result.problems + check_chart.unjustified_problems(result.unjustified)
    ]
    assert problems == [], "\n".join(problems)
    assert result.passed > 0


# --- what the checks catch ---------------------------------------------------------------


def _obj(body: dict[str, Any], template: str = "templates/x.yaml") -> Any:
    return RenderedObject(template, body)


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
        },
    },
}
CERTIFICATE = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Certificate",
    "metadata": {"name": "web"},
    "spec": {"secretName": "web-tls", "issuerRef": {"name": "ca"}, "dnsNames": ["web"]},
}


def test_a_valid_object_has_no_schema_error() -> None:
    assert check_chart.schema_errors(_obj(DEPLOYMENT)) == []
    assert check_chart.schema_errors(_obj(CERTIFICATE)) == []


VERSIONS = ", ".join(check_chart.KUBERNETES_VERSIONS)


def test_a_misspelled_or_mistyped_field_fails_for_every_kubernetes_version() -> None:
    body: Any = {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replica": 2}}
    body["metadata"] = {"name": "web", "annotations": {"checked": True}}
    errors = check_chart.schema_errors(_obj(body))
    assert any("'replica' was unexpected" in e and f"[Kubernetes {VERSIONS}]" in e for e in errors)
    assert any(e.startswith("metadata.annotations.checked: True is not of type") for e in errors)


def test_an_api_removed_from_kubernetes_fails() -> None:
    body = {
        "apiVersion": "policy/v1beta1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "x"},
    }
    assert check_chart.schema_errors(_obj(body)) == [
        "policy/v1beta1 PodDisruptionBudget is no API of Kubernetes and no custom resource in "
        f"chart_crd_schemas.yaml [Kubernetes {VERSIONS}]"
    ]


def test_custom_resources_are_held_to_their_schema() -> None:
    typo: Any = {**CERTIFICATE, "spec": {**CERTIFICATE["spec"], "dnsName": ["web"]}}
    assert "spec: Additional properties are not allowed ('dnsName' was unexpected)" in " ".join(
        check_chart.schema_errors(_obj(typo))
    )
    wrong: Any = {**CERTIFICATE, "spec": {**CERTIFICATE["spec"], "privateKey": {"size": "256"}}}
    assert check_chart.schema_errors(_obj(wrong)) == [
        "spec.privateKey.size: '256' is not of type 'integer' [chart_crd_schemas.yaml]"
    ]
    unknown = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor"}
    assert "no custom resource in chart_crd_schemas.yaml" in " ".join(
        check_chart.schema_errors(_obj({**unknown, "metadata": {"name": "x"}, "spec": {}}))
    )


def test_every_custom_resource_schema_is_a_valid_json_schema() -> None:
    schemas = check_chart.crd_schemas()
    assert {kind for _, kind in schemas} >= {"Certificate", "Issuer", "Cluster"}
    for schema in schemas.values():
        check_chart.jsonschema.Draft202012Validator.check_schema(schema)


def test_the_same_object_twice_is_a_problem() -> None:
    objects = [_obj(DEPLOYMENT, "templates/a.yaml"), _obj(DEPLOYMENT, "templates/b.yaml")]
    assert check_chart.duplicates(objects) == [
        "Deployment/web is rendered 2 times, by templates/a.yaml, templates/b.yaml"
    ]


def test_notes_and_empty_renders_are_left_out_and_every_document_must_be_an_object() -> None:
    manifests = check_chart.manifests_of(
        {
            "c/templates/NOTES.txt": "Thanks",
            "c/templates/off.yaml": "\n  \n",
            "c/templates/two.yaml": "---\na: 1\n---\n",
        }
    )
    assert list(manifests) == ["templates/two.yaml"]
    with pytest.raises(check_chart.ChartError, match=r"templates/two\.yaml renders a document"):
        check_chart.objects_of(manifests)


def test_skip_comments_need_a_check_id_and_a_reason() -> None:
    source = """\
        {{- /* checkov:skip=CKV_K8S_43: the tag is pinned by the release process */}}
        {{/*
        checkov:skip=CKV_K8S_15:Always pulls on every restart
        checkov:skip=CKV_K8S_8
        checkov:skip=latest: no
        */ -}}
        # checkov:skip=CKV_K8S_9: a YAML comment, not a Helm one
        """
    skips, malformed = check_chart.justifications(
        [{"name": "templates/a.yaml", "data": textwrap.dedent(source)}]
    )
    assert skips == {
        "templates/a.yaml": {
            "CKV_K8S_43": "the tag is pinned by the release process",
            "CKV_K8S_15": "Always pulls on every restart",
        }
    }
    assert malformed == [
        "templates/a.yaml: checkov:skip=CKV_K8S_8 has no reason "
        "(checkov:skip=CKV_K8S_8: why, in words)",
        "templates/a.yaml: checkov:skip=latest is no checkov check id",
    ]


def test_values_layer_like_helm_files() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    assert check_chart.merge_values(base, {"a": {"c": [2], "e": None}, "f": 2}) == {
        "a": {"b": 1, "c": [2], "e": None},
        "d": 1,
        "f": 2,
    }


# A chart of two identical bare Pods, one in a template that justifies two of the checks the
# pod fails, with a schema for its values, NOTES.txt, a template that renders nothing, and a
# second value set without the NetworkPolicy the default one has.
SMALL_CHART = {
    "Chart.yaml": "apiVersion: v2\nname: small\nversion: 0.1.0\n",
    "values.yaml": "image: busybox:1.37\nextra: false\nnetworkPolicy: true\n",
    "values.schema.json": """{
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "image": {"type": "string"},
            "extra": {"type": "boolean"},
            "networkPolicy": {"type": "boolean"}
        }
    }""",
    "ci/other-values.yaml": "image: busybox:1.36\nnetworkPolicy: false\n",
    "templates/NOTES.txt": "Installed {{ .Release.Name }}.\n",
    "templates/extra.yaml": '{{- if .Values.extra }}\n{{- fail "extra is not done" }}\n{{- end }}\n',
    "templates/networkpolicy.yaml": """\
        {{- if .Values.networkPolicy }}
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: small
        spec:
          podSelector:
            matchLabels:
              app: small
          policyTypes: [Ingress, Egress]
        {{- end }}
        """,
    "templates/justified.yaml": """\
        {{- /* checkov:skip=CKV_K8S_43: the image is chosen by the operator */}}
        {{- /* checkov:skip=CKV_K8S_21: Helm installs into the release's namespace */}}
        {{- /* checkov:skip=CKV_K8S_8 */}}
        apiVersion: v1
        kind: Pod
        metadata:
          name: justified
          labels:
            app: small
        spec:
          containers:
            - name: main
              image: {{ .Values.image }}
        """,
    "templates/bare.yaml": """\
        apiVersion: v1
        kind: Pod
        metadata:
          name: bare
          labels:
            app: small
        spec:
          containers:
            - name: main
              image: {{ .Values.image }}
        """,
}


@pytest.fixture
def small_chart(tmp_path: Path) -> Path:
    chart = tmp_path / "small"
    for name, text in SMALL_CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(textwrap.dedent(text))
    return chart


def test_render_chart_layers_values_and_fails_with_helms_message(small_chart: Path) -> None:
    with Chart.load(small_chart) as chart:
        render = make_renderer(chart, small_chart)
        assert [o.name for o in render()] == ["bare", "justified", "small"]
        other = render({"image": "busybox:1.35"}, value_set="other-values")
        assert {o.body["spec"]["containers"][0]["image"] for o in other} == {"busybox:1.35"}
        with pytest.raises(HelmValuesError, match="at '/image': got number, want string"):
            render({"image": 5})
        with pytest.raises(HelmValuesError, match="additional properties 'imgae' not allowed"):
            render({"imgae": "busybox"})
        with pytest.raises(HelmRenderError, match="extra is not done"):
            render({"extra": True})


def test_make_chart_fails_on_what_no_comment_justifies_and_names_it(
    small_chart: Path, tmp_path: Path
) -> None:
    """The whole check, with checkov writing into a folder under a dot folder as .medrelay is
    (checkov ignores such paths unless run inside them)."""
    _require_checkov()
    report = check_chart.check(small_chart, tmp_path / ".medrelay" / "chart", CHECKOV)
    assert list(report.renderings) == ["default", "other-values"]
    assert report.checkov is not None
    result = report.checkov

    def failed(findings: list[Any], template: str) -> set[tuple[str, str]]:
        return {(f.value_set, f.check_id) for f in findings if f.template == template}

    bare = failed(result.unjustified, "templates/bare.yaml")
    assert {check for _, check in bare} >= {"CKV_K8S_43", "CKV_K8S_21", "CKV_K8S_8"}
    assert failed(result.justified, "templates/bare.yaml") == set()
    # Each value set is scanned alone: the default set's NetworkPolicy covers no pod of the
    # other (one checkov run over both would join them in its graph).
    assert ("other-values", "CKV2_K8S_6") in bare
    assert ("default", "CKV2_K8S_6") not in bare
    assert failed(result.justified, "templates/justified.yaml") == {
        (value_set, check)
        for value_set in ("default", "other-values")
        for check in ("CKV_K8S_43", "CKV_K8S_21")
    }
    # The same pod fails the same checks wherever it comes from; the skip without a reason
    # justifies nothing.
    assert (
        failed(result.unjustified, "templates/justified.yaml")
        | failed(result.justified, "templates/justified.yaml")
        == bare
    )
    messages = [str(p) for p in report.problems]
    assert "checkov [*]: templates/justified.yaml: checkov:skip=CKV_K8S_8 has no reason " in (
        " ".join(messages)
    )
    assert (
        'checkov [default, other-values]: CKV_K8S_43 "Image should use digest": '
        "Pod.default.bare from templates/bare.yaml" in messages
    )
    assert all(p.stage == "checkov" for p in report.problems)


def test_make_chart_prints_one_line_per_value_set_and_exits_non_zero_on_a_problem(
    small_chart: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    justified = small_chart / "templates/justified.yaml"
    justified.write_text(justified.read_text().replace("{{- /* checkov:skip=CKV_K8S_8 */}}", ""))
    args = ["--chart", str(small_chart), "--out", str(tmp_path / "out"), "--no-checkov"]
    assert check_chart.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert " ".join(out[1].split()) == "default 3 objects from 3 templates lint ok schemas ok"
    assert out[2].split()[:2] == ["other-values", "2"]
    assert out[-1].startswith("OK: 2 value sets, 5 objects, no problem")

    (small_chart / "ci/broken-values.yaml").write_text("image: [not, a, string]\n")
    (small_chart / "templates/bare.yaml").write_text(
        (small_chart / "templates/bare.yaml").read_text().replace("containers:", "container:")
    )
    assert check_chart.main(args) == 1
    out = capsys.readouterr().out
    assert "broken-values  did not render" in out
    assert "schema [default]: Pod/bare (templates/bare.yaml): spec: Additional properties" in out
    assert "FAILED" in out
