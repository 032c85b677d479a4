"""Check the Helm chart: what `make chart` runs, and what tests/deploy runs in `make test`.

For the chart's default values and for every value set in deploy/helm/medrelay/ci/*.yaml:

1. render it with Helm v4's own engine (helm-python-sdk: no helm binary, no cluster), which
   also validates the values against values.schema.json;
2. lint it strictly (a warning fails);
3. validate every rendered object offline against the Kubernetes API's JSON schemas, strict
   (an unknown field fails), for the oldest and the newest Kubernetes we check; custom
   resources against scripts/chart_crd_schemas.yaml; the same object twice fails;
4. scan the rendered manifests with checkov's kubernetes framework, one run per value set, side
   by side. A failed check is justified when the template the object comes from carries a
   Helm comment `{{- /* checkov:skip=CKV_K8S_NN: reason in words */}}`; any other fails.

The manifests are written one file per template and value set
(.medrelay/chart/<value set>/templates/<name>.yaml, not committed), so every checkov finding
leads back to its template. Usage: python scripts/check_chart.py [--chart DIR] [--out DIR]
[--checkov PATH]; exit status 0 when there is no problem, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from helm_python import _native
from helm_python.chart import Chart, lint, values_from_yaml
from helm_python.errors import HelmError
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "deploy" / "helm" / "medrelay"
OUT_DIR = ROOT / ".medrelay" / "chart"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CRD_SCHEMAS = Path(__file__).resolve().with_name("chart_crd_schemas.yaml")
# kubernetes-validate's JSON schemas: v<version>-local-strict/<kind>-<group>-<version>.json.
_SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"

# The release every value set is rendered as.
RELEASE = "medrelay"
NAMESPACE = "medrelay"
# The chart is rendered and linted for the first (the oldest Kubernetes we support, so a
# template that asks .Capabilities.KubeVersion takes that branch) and every object is validated
# against each: the oldest catches a field that is too new, the newest one that was removed.
# 1.37 is the newest kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.27", "1.37")
# The name of the default values' set; the others are named by their file in ci/.
DEFAULT = "default"
# Written into the output folder, so only a folder this script made is ever emptied.
_MARKER = ".check_chart"

# libyaml's loader when PyYAML has it: ten times faster than the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SKIP_COMMENT = re.compile(r"\{\{-?\s*/\*(.*?)\*/\s*-?\}\}", re.DOTALL)
_SKIP = re.compile(r"checkov:skip=([A-Za-z0-9_]+)[ \t]*(?::([^\n]*))?")


class ChartError(Exception):
    """The chart rendered something that is not a list of Kubernetes objects."""


@dataclass(frozen=True)
class ValueSet:
    """Values the chart is checked with: the defaults (no file) or one file in ci/."""

    name: str
    path: Path | None

    def values(self) -> dict[str, Any]:
        """The values as Helm's own YAML parser reads a `-f` file."""
        if self.path is None:
            return {}
        return values_from_yaml(self.path.read_text())


@dataclass(frozen=True)
class RenderedObject:
    """One Kubernetes object of a rendering, with the template it came from."""

    template: str  # relative to the chart, as Chart.templates names it: templates/x.yaml
    body: dict[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        namespace = (self.body.get("metadata") or {}).get("namespace")
        return None if namespace is None else str(namespace)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} ({self.template})"


@dataclass
class Rendering:
    """A value set rendered: each template's text (NOTES.txt and empty ones left out)."""

    value_set: ValueSet
    manifests: dict[str, str]
    objects: list[RenderedObject]


@dataclass(frozen=True)
class Problem:
    """Anything that fails the check, with the stage and value set it was found in."""

    stage: str
    value_sets: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"{self.stage} [{', '.join(self.value_sets)}]: {self.message}"


@dataclass(frozen=True)
class Finding:
    """A check checkov failed on one object of one value set."""

    check_id: str
    check_name: str
    resource: str  # checkov's Kind.namespace.name
    value_set: str
    template: str
    justification: str | None  # the reason in the chart, None when there is none

    def describe(self) -> str:
        # A graph check names its resource Kind.namespace.name followed by every label.
        resource = ".".join(self.resource.split(".")[:3]) if "/" in self.resource else self.resource
        return f'{self.check_id} "{self.check_name}": {resource} from {self.template}'


@dataclass
class CheckovResult:
    """checkov's findings on the rendered manifests of every value set."""

    passed: int
    unjustified: list[Finding]
    justified: list[Finding]
    problems: list[Problem]
    version: str = ""


@dataclass
class Report:
    renderings: dict[str, Rendering] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    checkov: CheckovResult | None = None
    notes: list[str] = field(default_factory=list)


# --- rendering -----------------------------------------------------------------------------


def value_sets(chart_dir: Path) -> list[ValueSet]:
    """The default values, then every ci/*.yaml (or .yml) in name order."""
    files = sorted(
        path for pattern in ("*.yaml", "*.yml") for path in (chart_dir / "ci").glob(pattern)
    )
    return [ValueSet(DEFAULT, None), *(ValueSet(path.stem, path) for path in files)]


def render(
    chart: Chart,
    values: Mapping[str, Any],
    *,
    kube_version: str = KUBERNETES_VERSIONS[0],
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """Helm's render of an install: {template path under the chart's name: text}.

    Chart.render has no kube_version parameter, though the library's render options take one
    (it refuses unknown option keys, so a version without it fails loudly here): without it
    .Capabilities.KubeVersion would be the library's default rather than the one linted and
    validated. Helm validates the values against values.schema.json first (HelmValuesError).
    """
    options = {
        "name": name,
        "namespace": namespace,
        "is_install": True,
        "kube_version": f"v{kube_version}.0",
    }
    rendered = _native.call_string(
        "helm_render", chart._raw(), json.dumps(dict(values)), json.dumps(options)
    )
    manifests: dict[str, str] = json.loads(rendered)
    return manifests


def manifests_of(rendered: Mapping[str, str]) -> dict[str, str]:
    """Keyed by the template's path in the chart; NOTES.txt and empty renders left out."""
    manifests = {}
    for path, text in sorted(rendered.items()):
        template = path.split("/", 1)[1] if "/" in path else path
        if Path(template).name == "NOTES.txt" or not text.strip():
            continue
        manifests[template] = text
    return manifests


def objects_of(manifests: Mapping[str, str]) -> list[RenderedObject]:
    """Every YAML document of every template, each of which must be a Kubernetes object."""
    objects = []
    for template, text in manifests.items():
        try:
            documents = list(yaml.load_all(text, Loader=_YAML_LOADER))
        except yaml.YAMLError as error:
            raise ChartError(f"{template} renders YAML that does not parse: {error}") from error
        for document in documents:
            if document is None:
                continue
            metadata = document.get("metadata") if isinstance(document, dict) else None
            if not (
                isinstance(document, dict)
                and isinstance(document.get("apiVersion"), str)
                and isinstance(document.get("kind"), str)
                and isinstance(metadata, dict)
                and metadata.get("name")
            ):
                raise ChartError(
                    f"{template} renders a document that is no Kubernetes object "
                    f"(apiVersion, kind and metadata.name): {str(document)[:200]}"
                )
            objects.append(RenderedObject(template, document))
    return objects


def render_value_set(chart: Chart, value_set: ValueSet) -> Rendering:
    """Render one value set. Raises HelmError (values, template) or ChartError (output)."""
    manifests = manifests_of(render(chart, value_set.values()))
    return Rendering(value_set, manifests, objects_of(manifests))


def merge_values(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`-f base -f override`: maps merge key by key, anything else is replaced.

    A None in override is kept, so Helm then removes that key from the chart's defaults.
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- lint and schemas ----------------------------------------------------------------------


def lint_messages(
    chart_dir: Path, values: Mapping[str, Any], kube_version: str = KUBERNETES_VERSIONS[0]
) -> list[str]:
    """`helm lint --strict`: every warning and error as "path: message"."""
    report = lint(chart_dir, dict(values), strict=True, kube_version=f"v{kube_version}.0")
    messages = [
        f"{message['path']}: {message['error'].strip()}"
        for message in report.get("messages") or []
        if message.get("severity", 0) >= 2
    ]
    if not messages:
        messages = [str(error).strip() for error in report.get("errors") or []]
    return messages


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the JSON schema of the whole object, from chart_crd_schemas.yaml."""
    specs = yaml.safe_load(CRD_SCHEMAS.read_text())
    metadata = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schemas = {}
    for api_version, kinds in specs.items():
        for kind, spec in kinds.items():
            schemas[(api_version, kind)] = {
                "type": "object",
                "required": ["apiVersion", "kind", "metadata", "spec"],
                "additionalProperties": False,
                "properties": {
                    "apiVersion": {"const": api_version},
                    "kind": {"const": kind},
                    "metadata": metadata,
                    "spec": spec,
                },
            }
    return schemas


def _path(parts: Iterable[Any]) -> str:
    return ".".join(str(part) for part in parts) or "(the object)"


@cache
def _kubernetes_definitions(version: str) -> Registry[Any]:
    """The shared definitions of one Kubernetes version's strict schemas, parsed once.

    kubernetes_validate.validate reads and parses this 1.3 MB file again for every object
    (15 ms each, seconds for a chart): the files are the same, only loaded once here.
    """
    folder = _SCHEMAS / f"v{version}.0-local-strict"
    if not folder.is_dir():
        raise ChartError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    definitions = json.loads((folder / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@cache
def _kubernetes_validator(
    version: str, api_version: str, kind: str
) -> jsonschema.Draft202012Validator | None:
    """The strict validator of one kind, named as kubernetes_validate names its files (the
    group's first label: rbac.authorization.k8s.io/v1 -> rbac-v1), or None: no such API."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _SCHEMAS / f"v{version}.0-local-strict" / f"{kind.lower()}-{group_version}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    registry = Resource.from_contents(schema) @ _kubernetes_definitions(version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


@cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator | None:
    schema = crd_schemas().get((api_version, kind))
    return None if schema is None else jsonschema.Draft202012Validator(schema)


def _errors(validator: jsonschema.Draft202012Validator, body: Mapping[str, Any]) -> list[str]:
    errors = sorted(validator.iter_errors(body), key=lambda error: list(map(str, error.path)))
    return [f"{_path(error.path)}: {error.message}" for error in errors]


def schema_errors(obj: RenderedObject, versions: Sequence[str] = KUBERNETES_VERSIONS) -> list[str]:
    """What is wrong with one object, each message naming the schemas it fails against.

    A kind Kubernetes has is validated against every version; one it has not is looked up in
    chart_crd_schemas.yaml. An API that one version has and the other has not (removed, or too
    new) fails for the version without it.
    """
    failures: dict[str, list[str]] = defaultdict(list)
    crd = _crd_validator(obj.api_version, obj.kind)
    for version in versions:
        validator = _kubernetes_validator(version, obj.api_version, obj.kind)
        if validator is not None:
            for message in _errors(validator, obj.body):
                failures[message].append(version)
        elif crd is None:
            failures[
                f"{obj.api_version} {obj.kind} is no API of Kubernetes and no custom resource "
                f"in {CRD_SCHEMAS.name}"
            ].append(version)
    if crd is not None:
        for message in _errors(crd, obj.body):
            failures[f"{message} [{CRD_SCHEMAS.name}]"] = []
    return [
        f"{message} [Kubernetes {', '.join(versions)}]" if versions else message
        for message, versions in failures.items()
    ]


def duplicates(objects: Iterable[RenderedObject]) -> list[str]:
    """Objects rendered more than once (Helm refuses such a release)."""
    seen: dict[tuple[str, str, str | None, str], list[str]] = defaultdict(list)
    for obj in objects:
        group = obj.api_version.rsplit("/", 1)[0] if "/" in obj.api_version else ""
        seen[(group, obj.kind, obj.namespace, obj.name)].append(obj.template)
    return [
        f"{kind}/{name} is rendered {len(templates)} times, by {', '.join(templates)}"
        for (_, kind, _, name), templates in seen.items()
        if len(templates) > 1
    ]


# --- checkov -------------------------------------------------------------------------------


def justifications(
    templates: Iterable[Mapping[str, str]],
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Skips in templates' Helm comments: ({template: {check id: reason}}, malformed skips).

    templates are Chart.templates: [{"name": "templates/x.yaml", "data": source}].
    """
    found: dict[str, dict[str, str]] = {}
    malformed = []
    for template in templates:
        name, source = template["name"], template["data"]
        for comment in _SKIP_COMMENT.findall(source):
            for check_id, reason in _SKIP.findall(comment):
                reason = reason.strip()
                if not re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", check_id):
                    malformed.append(f"{name}: checkov:skip={check_id} is no checkov check id")
                elif not reason:
                    malformed.append(
                        f"{name}: checkov:skip={check_id} has no reason "
                        f"(checkov:skip={check_id}: why, in words)"
                    )
                else:
                    found.setdefault(name, {})[check_id] = reason
    return found, malformed


def write_manifests(out_dir: Path, renderings: Iterable[Rendering]) -> dict[Path, tuple[str, str]]:
    """One file per value set and template; returns {file: (value set, template)}.

    The folder is emptied first, but only when this function made it.
    """
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / _MARKER).exists():
            raise ChartError(f"{out_dir} holds files this script did not write: not emptying it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / _MARKER).write_text("written by scripts/check_chart.py, emptied on each run\n")
    files = {}
    for rendering in renderings:
        for template, text in rendering.manifests.items():
            path = out_dir / rendering.value_set.name / template
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            files[path.resolve()] = (rendering.value_set.name, template)
    return files


def _keep(work: Path, out_dir: Path) -> None:
    """Put this run's manifests at out_dir, where the last run's were (if this script's)."""
    try:
        if out_dir.exists() and (out_dir / _MARKER).exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
    except OSError:
        shutil.rmtree(work, ignore_errors=True)


def _checkov(checkov: Path, directory: Path, timeout: float) -> dict[str, Any]:
    """checkov's JSON report of one folder; exit status 1 only says that some check failed."""
    command = [str(checkov), "--framework", "kubernetes", "--skip-download", "--quiet"]
    # Run in the folder, on ".": checkov ignores every path with a folder whose name starts
    # with a dot (such as .medrelay) in it, and then reports no object and no failure at all.
    command += ["--output", "json", "--directory", "."]
    # Without this checkov asks PyPI for a newer version of itself on every run.
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    done = subprocess.run(
        command,
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if done.returncode not in (0, 1):
        raise ChartError(f"checkov exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    try:
        report: dict[str, Any] | list[dict[str, Any]] = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise ChartError(
            f"checkov on {directory.name} exited {done.returncode} without a JSON report "
            f"({error}): {done.stdout[:300]!r} {done.stderr.strip()[-1500:]}"
        ) from error
    # One report per framework: a list when several ran, a bare summary when nothing was found.
    reports = report if isinstance(report, list) else [report]
    merged: dict[str, Any] = {"failed": [], "skipped": [], "passed": 0, "resources": 0}
    for one in reports:
        results = one.get("results") or {}
        summary = one.get("summary", one)
        merged["failed"] += results.get("failed_checks") or []
        merged["skipped"] += results.get("skipped_checks") or []
        merged["passed"] += int(summary.get("passed", 0))
        merged["resources"] += int(summary.get("resource_count", 0))
        merged["parsing_errors"] = int(summary.get("parsing_errors", 0))
        merged["version"] = str(summary.get("checkov_version", ""))
    return merged


def run_checkov(checkov: Path, out_dir: Path, timeout: float = 300) -> dict[str, Any]:
    """One checkov run per value set (the folders write_manifests made), side by side.

    Not one run over all of them: checkov's graph checks join objects across every file of a
    run, so a NetworkPolicy of one value set would cover the pods of another that has none
    (CKV2_K8S_6 passed for a value set with networkPolicy.enabled=false that way).
    """
    if not checkov.exists():
        raise ChartError(f"no checkov at {checkov}: run `make chart` to create .venv-checkov")
    folders = sorted(p for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ChartError(f"no manifests in {out_dir}")
    with ThreadPoolExecutor(max_workers=min(len(folders), os.cpu_count() or 2)) as pool:
        reports = list(pool.map(lambda folder: _checkov(checkov, folder, timeout), folders))
    merged: dict[str, Any] = {"failed": [], "skipped": [], "passed": 0, "resources": 0}
    merged["parsing_errors"] = 0
    for report in reports:
        for key in ("failed", "skipped", "passed", "resources", "parsing_errors"):
            merged[key] += report[key]
        merged["version"] = report.get("version", "")
    return merged


def classify(
    report: Mapping[str, Any],
    files: Mapping[Path, tuple[str, str]],
    skips: Mapping[str, Mapping[str, str]],
) -> CheckovResult:
    """Sort checkov's failures into justified (a skip comment in the template) and not."""
    result = CheckovResult(int(report["passed"]), [], [], [], str(report.get("version", "")))
    for check, via_annotation in [(c, False) for c in report["failed"]] + [
        (c, True) for c in report["skipped"]
    ]:
        value_set, template = files.get(
            Path(check.get("file_abs_path", "")).resolve(),
            ("?", str(check.get("file_path", "?"))),
        )
        if via_annotation:
            # checkov's own skip (a checkov.io/skip annotation in the rendered object).
            reason = str(check.get("suppress_comment") or "").strip()
            reason = "" if reason == "No comment provided" else reason
        else:
            reason = skips.get(template, {}).get(check["check_id"], "")
        finding = Finding(
            check["check_id"],
            str(check.get("check_name", "")),
            str(check.get("resource", "")),
            value_set,
            template,
            reason or None,
        )
        (result.justified if reason else result.unjustified).append(finding)
    if report.get("parsing_errors"):
        result.problems.append(
            Problem("checkov", ("*",), f"{report['parsing_errors']} manifests did not parse")
        )
    if files and not report.get("resources"):
        result.problems.append(Problem("checkov", ("*",), "checkov found no Kubernetes object"))
    return result


def unjustified_problems(findings: Iterable[Finding]) -> list[Problem]:
    """One problem per check, object and template, naming every value set it fails in."""
    by_finding: dict[str, list[str]] = defaultdict(list)
    for finding in findings:
        by_finding[finding.describe()].append(finding.value_set)
    return [
        Problem("checkov", tuple(sorted(set(sets), key=lambda s: (s != DEFAULT, s))), message)
        for message, sets in sorted(by_finding.items())
    ]


def unused_skips(skips: Mapping[str, Mapping[str, str]], justified: Iterable[Finding]) -> list[str]:
    """Skip comments that justified nothing in any value set (stale, or a mistyped id)."""
    used = {(finding.template, finding.check_id) for finding in justified}
    return [
        f"{template}: checkov:skip={check_id} justified no failure in any value set"
        for template, checks in sorted(skips.items())
        for check_id in sorted(checks)
        if (template, check_id) not in used
    ]


# --- the whole check -----------------------------------------------------------------------


def check(chart_dir: Path, out_dir: Path, checkov: Path | None) -> Report:
    """Every check on every value set; checkov is skipped when checkov is None."""
    report = Report()
    sets = value_sets(chart_dir)
    with Chart.load(chart_dir) as chart:
        for value_set in sets:
            name = (value_set.name,)
            try:
                rendering = render_value_set(chart, value_set)
            except (HelmError, ChartError, yaml.YAMLError) as error:
                report.problems.append(Problem("render", name, str(error).strip()))
                continue
            report.renderings[value_set.name] = rendering
            for message in lint_messages(chart_dir, value_set.values()):
                report.problems.append(Problem("lint", name, message))
            for obj in rendering.objects:
                for message in schema_errors(obj):
                    report.problems.append(Problem("schema", name, f"{obj}: {message}"))
            for message in duplicates(rendering.objects):
                report.problems.append(Problem("duplicate", name, message))
        skips, malformed = justifications(chart.templates)
    report.problems += [Problem("checkov", ("*",), message) for message in malformed]
    if checkov is not None and report.renderings:
        # Written and scanned in a folder of this run's own, which then replaces out_dir: a
        # second `make chart` in the same tree must not empty the folder under this one's scan.
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{out_dir.name}-", dir=out_dir.parent))
        try:
            files = write_manifests(work, report.renderings.values())
            result = classify(run_checkov(checkov, work), files, skips)
        except (ChartError, subprocess.TimeoutExpired) as error:
            report.problems.append(Problem("checkov", ("*",), str(error)))
        else:
            report.checkov = result
            report.problems += result.problems + unjustified_problems(result.unjustified)
            report.notes += unused_skips(skips, result.justified)
        finally:
            _keep(work, out_dir)
    return report


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _summary_line(rendering: Rendering, report: Report, width: int) -> str:
    name = rendering.value_set.name
    stages = Counter(p.stage for p in report.problems if name in p.value_sets)
    parts = [
        f"{len(rendering.objects):3} objects from {len(rendering.manifests):2} templates",
        "lint ok" if not stages["lint"] else f"lint {stages['lint']} problems",
        "schemas ok"
        if not stages["schema"] + stages["duplicate"]
        else f"schemas {stages['schema'] + stages['duplicate']} problems",
    ]
    if report.checkov is not None:
        failed = sum(1 for f in report.checkov.unjustified if f.value_set == name)
        justified = sum(1 for f in report.checkov.justified if f.value_set == name)
        parts.append(f"checkov {failed} unjustified, {justified} justified")
    return f"  {name:{width}}  " + "   ".join(parts)


def print_report(report: Report, chart_dir: Path, out_dir: Path, seconds: float) -> None:
    versions = " and ".join(KUBERNETES_VERSIONS)
    print(
        f"chart {_shown(chart_dir)}: rendered as release {RELEASE!r} in namespace "
        f"{NAMESPACE!r} for Kubernetes {KUBERNETES_VERSIONS[0]}, objects validated against "
        f"{versions}"
    )
    width = max(map(len, report.renderings), default=0)
    for rendering in report.renderings.values():
        print(_summary_line(rendering, report, width))
    for problem in report.problems:
        if problem.stage == "render":
            print(f"  {problem.value_sets[0]:{width}}  did not render")
    if report.checkov is not None:
        result = report.checkov
        print(
            f"checkov {result.version} (kubernetes): {result.passed} checks passed, "
            f"{len(result.justified)} failed with a justification in the chart, "
            f"{len(result.unjustified)} failed without one; manifests in {_shown(out_dir)}"
        )
    for note in report.notes:
        print(f"note: {note}")
    objects = sum(len(r.objects) for r in report.renderings.values())
    if report.problems:
        print(f"{len(report.problems)} problems:")
        for problem in report.problems:
            print(f"  {problem}")
        print(f"FAILED in {seconds:.1f} s")
    else:
        print(
            f"OK: {len(report.renderings)} value sets, {objects} objects, no problem "
            f"({seconds:.1f} s)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart", type=Path, default=CHART_DIR, help="the chart's folder")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where manifests are written")
    parser.add_argument("--checkov", type=Path, default=CHECKOV, help="the checkov command")
    parser.add_argument("--no-checkov", action="store_true", help="render, lint, schemas only")
    args = parser.parse_args(argv)
    chart_dir = args.chart.resolve()
    if not (chart_dir / "Chart.yaml").is_file():
        print(f"no chart at {chart_dir} (no Chart.yaml)", file=sys.stderr)
        return 1
    started = time.monotonic()
    report = check(chart_dir, args.out.resolve(), None if args.no_checkov else args.checkov)
    print_report(report, chart_dir, args.out.resolve(), time.monotonic() - started)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
