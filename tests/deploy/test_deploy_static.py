"""docker-compose.yml, the compose overlay and the Dockerfiles, read as files (no Docker here)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from importlib.metadata import version

import pytest
import yaml
from deploy_support import COMPOSE, REPO, SERVICES
from packaging.requirements import Requirement

SERVICE_NAMES = {"postgres", "mlflow", "ray-head", "ray-worker"}
DOCKERFILES = [SERVICES / "mlflow" / "Dockerfile", SERVICES / "ray" / "Dockerfile"]
REQUIREMENTS = [SERVICES / "mlflow" / "requirements.txt", SERVICES / "ray" / "requirements.txt"]
# An exact release: PostgreSQL numbers them MAJOR.MINOR (16.4), most others X.Y.Z.
EXACT_TAG = re.compile(r"^(?P<name>[\w./-]+):(?P<tag>\d+\.\d+(\.\d+)?([-.][\w.-]+)?)$")
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|PASSWD|_KEY$", re.IGNORECASE)


def defaults(text: str) -> str:
    """``text`` with each ``${VAR:-default}`` replaced by its default (no .env file)."""
    return INTERPOLATION.sub(lambda m: m["default"] or "", text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _ports(service: dict) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port, defaults applied."""
    published = []
    for entry in service.get("ports", []):
        assert isinstance(entry, str), f"use the short syntax HOST_IP:HOST_PORT:PORT, got {entry}"
        parts = defaults(entry).split(":")
        assert len(parts) == 3, f"a published port must name its host address, got {entry!r}"
        published.append(tuple(parts))
    return published


def test_the_four_services_with_healthchecks(compose):
    services = compose["services"]
    assert set(services) == SERVICE_NAMES
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        assert "container_name" not in service  # ray-worker must scale
        assert service.get("network_mode") != "host"


def test_start_order_waits_for_health(compose):
    services = compose["services"]

    def conditions(name):
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("mlflow") == {"postgres": "service_healthy"}
    assert conditions("ray-head") == {"postgres": "service_healthy",
                                      "mlflow": "service_healthy"}
    assert conditions("ray-worker") == {"ray-head": "service_healthy"}
    assert "depends_on" not in services["postgres"]


def test_only_mlflow_is_published_and_only_on_loopback(compose):
    services = compose["services"]
    for name, service in services.items():
        if name != "mlflow":
            assert not service.get("ports"), f"{name} must not publish a port"
    assert _ports(services["mlflow"]) == [("127.0.0.1", "5000", "5000")]
    # the address is overridable, documented in .env.example and docs/deploy.md
    assert "${MLFLOW_BIND:-127.0.0.1}" in services["mlflow"]["ports"][0]
    for documented in (SERVICES / ".env.example", REPO / "docs" / "deploy.md"):
        assert "MLFLOW_BIND" in documented.read_text()


def test_an_internal_network_holds_the_database_and_ray(compose):
    networks = compose["networks"]
    assert networks["backend"]["internal"] is True
    services = compose["services"]
    for name in ("postgres", "ray-head", "ray-worker"):
        assert services[name]["networks"] == ["backend"]
    assert set(services["mlflow"]["networks"]) == {"backend", "frontend"}
    head = services["ray-head"]["command"]
    assert "--dashboard-host=0.0.0.0" in head  # inside the internal network only


def test_overlay_publishes_only_on_loopback():
    overlay = yaml.safe_load((SERVICES / "compose.submit.yml").read_text())
    for name, service in overlay["services"].items():
        for host_ip, _, _ in _ports(service):
            assert host_ip == "127.0.0.1", name


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_no_secret_value_is_written_in_the_compose_files(compose):
    for name, service in compose["services"].items():
        assert "env_file" not in service, name
        for key, value in _environment(service).items():
            if SECRETISH.search(key):
                assert key.endswith(("_FILE", "_PATH")), f"{name}: {key} holds a secret inline"
                assert value.startswith("/run/secrets/"), f"{name}: {key}={value}"
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", value), f"{name}: {key} has a password"
    for name, secret in compose["secrets"].items():
        assert set(secret) == {"file"} and secret["file"].startswith("./services/secrets/"), name
    for path in (COMPOSE, SERVICES / "compose.submit.yml", SERVICES / ".env.example"):
        text = path.read_text()
        assert not re.search(r"(PASSWORD|SECRET|TOKEN)\w*\s*[=:]\s*(?!/run/secrets/)[^\s#]+",
                             re.sub(r"\w+_(FILE|PATH)\s*[=:]", "", text)), path
    ignored = (SERVICES / "secrets" / ".gitignore").read_text().split()
    assert ignored[ignored.index("*")] == "*"  # every secret file stays out of git
    tracked = subprocess.run(["git", "ls-files", "services/secrets"], cwd=REPO,
                             capture_output=True, text=True).stdout.split()
    assert set(tracked) <= {"services/secrets/.gitignore", "services/secrets/README.md"}


def test_ray_nodes_use_token_authentication(compose):
    for name in ("ray-head", "ray-worker"):
        env = _environment(compose["services"][name])
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token"
        assert "ray_auth_token" in compose["services"][name]["secrets"]


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = defaults(service["image"])
        assert EXACT_TAG.match(image), f"{name}: image {image!r} must have an exact version tag"
    for dockerfile in DOCKERFILES:
        lines = [line.strip() for line in dockerfile.read_text().splitlines()]
        froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
        assert froms, dockerfile
        for base in froms:
            assert EXACT_TAG.match(base) and "latest" not in base, f"{dockerfile}: FROM {base}"
            python = re.match(r"python:(\d+\.\d+)\.\d+-", base)
            assert python, f"{dockerfile}: FROM {base} must be python:X.Y.Z-..."
            # the images run the Python the tests run
            assert python[1] == f"{sys.version_info.major}.{sys.version_info.minor}"
        users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
        assert users and users[-1] not in ("root", "0"), f"{dockerfile} must not run as root"


def test_python_packages_are_pinned_within_the_projects_ranges():
    """Exact pins, each allowed by pyproject.toml; a pin that differs from the version these
    tests run with is reported as a warning (the images then run an untested version)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = {Requirement(r).name: Requirement(r).specifier for r in
                tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    for path in REQUIREMENTS:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            requirement = Requirement(line)
            pins = [s for s in requirement.specifier if s.operator == "=="]
            assert len(pins) == 1 and re.fullmatch(r"\d+(\.\d+)+", pins[0].version), \
                f"{path}: {line} is not pinned to an exact version"
            pinned = pins[0].version
            if requirement.name in declared:
                assert pinned in declared[requirement.name], f"{path}: {line} vs pyproject.toml"
            installed = version(requirement.name)
            if installed != pinned:
                warnings.warn(f"{path.relative_to(REPO)} pins {requirement.name}=={pinned} "
                              f"but the tests run {installed}: update the pin", stacklevel=1)
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if "pip install" in line and not line.lstrip().startswith("#"):
                assert "-r /tmp/requirements.txt" in line, f"{dockerfile}: {line}"


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _image_pins() -> dict[str, set[str]]:
    """Each package the images pin, with the versions pinned (one per image that has it)."""
    pins: dict[str, set[str]] = {}
    for path in REQUIREMENTS:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                requirement = Requirement(line)
                pins.setdefault(requirement.name, set()).update(
                    s.version for s in requirement.specifier if s.operator == "==")
    return pins


def test_tested_versions_are_one_fact(compose):
    """pyproject.toml is the source of the Ray and MLflow versions: its ranges are exactly
    the minor versions nnchain/versions.py's TESTED names (the gate on private hooks), the
    test extra's mlflow[auth] has the same range, every image pins a release in it and is
    tagged with that release."""
    from nnchain.versions import TESTED

    project = _pyproject()
    declared = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    extra = {Requirement(r).name: Requirement(r).specifier
             for r in project["optional-dependencies"]["test"]}
    pins = _image_pins()
    for lib, minor in TESTED.items():
        major, minor_number = (int(part) for part in minor.split("."))
        allowed = declared[lib]
        assert f"{minor}.0" in allowed and f"{minor}.17" in allowed, f"{lib}: {allowed}"
        outside = [f"{major}.{minor_number + 1}.0", f"{major}.{minor_number - 1}.99",
                   f"{major + 1}.0.0"]
        assert not list(allowed.filter(outside)), f"{lib}: pyproject.toml allows {allowed}"
        assert pins.get(lib), f"no image pins {lib}"
        for pinned in pins[lib]:
            assert pinned in allowed, f"an image pins {lib}=={pinned}, pyproject.toml {allowed}"
    assert extra["mlflow"] == declared["mlflow"]
    tags = {defaults(service["image"]) for service in compose["services"].values()}
    assert {f"nnchain-ray:{version}" for version in pins["ray"]} <= tags
    assert {f"nnchain-mlflow:{version}" for version in pins["mlflow"]} <= tags


def test_every_third_party_import_is_declared():
    """Every library nnchain/ imports is in pyproject.toml's dependencies (an undeclared one
    works here, where something else installed it, and fails after a clean install)."""
    import ast
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    declared = {canonicalize_name(Requirement(r).name) for r in _pyproject()["dependencies"]}
    top_level: set[str] = set()
    for path in (REPO / "nnchain").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                top_level.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top_level.add(node.module.split(".")[0])
    third_party = top_level - set(sys.stdlib_module_names) - {"nnchain"}
    distributions = packages_distributions()
    undeclared = {module: distributions.get(module) for module in sorted(third_party)
                  if not {canonicalize_name(d) for d in distributions.get(module, [])}
                  & declared}
    assert not undeclared, f"imported by nnchain/ but not in pyproject.toml: {undeclared}"


@pytest.mark.parametrize("script", ["postgres/init.sh", "ray/entrypoint.sh", "make-secrets.sh"])
def test_shell_scripts_parse(script):
    done = subprocess.run(["sh", "-n", str(SERVICES / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
