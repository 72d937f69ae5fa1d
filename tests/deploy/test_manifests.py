"""Deployment files: container image, Kubernetes manifests, compose stack.

No Docker engine or cluster runs here, so the files are checked by the tools that know their
formats, all offline:
- Kubernetes core manifests: kubernetes-validate (the API's JSON schemas, shipped in the
  package), strict mode (unknown fields fail), for the oldest and newest versions below;
- the PodMonitor (a CRD, no schema shipped): YAML and the fields that make it scrape the pods;
- compose.yaml: the Compose specification's schema vendored in check-jsonschema;
- the compose Prometheus config: `promtool check config` (also loads the alert rules);
- the Dockerfile: statically;
and by cross-checks between the files (names, ports, paths, the hostfile, the secrets), and of
the settings they give against the service's own parser (`Settings.from_env`).
"""

import fnmatch
import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml
from psycopg.conninfo import conninfo_to_dict

from clickstream.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

# Kubernetes versions validated against: an old one still widely run and the newest schema
# set that kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30", "1.37")
NOT_CORE = {"kustomization.yaml", "podmonitor.yaml"}  # not Kubernetes API core objects

UID = 10001
METRICS_PORT = 3030
CLUSTER_PORT = 9999
DATAFLOW_ARGS = ["dataflows.clickstream:flow", "-r", "/var/lib/clickstream/recovery", "-s", "5", "-b", "0"]
DATAFLOW_SERVICES = ("clickstream-0", "clickstream-1")
POSTGRES_PASSWORD_VARIABLE = "CLICKSTREAM_POSTGRES_PASSWORD"


# ---------------------------------------------------------------------------------- helpers

def require(module: str, requirement: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(f"{requirement!r} is not installed; it validates the deployment files: "
                    f"{Path(sys.executable).parent / 'pip'} install '{requirement}'")


def tool(name: str, requirement: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{path} is missing; install {requirement!r} into this environment")
    return path


def core_manifest_files():
    return sorted(p for p in K8S.glob("*.yaml") if p.name not in NOT_CORE)


def documents(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_objects():
    return [d for p in core_manifest_files() for d in documents(p)]


def one(kind: str, **where) -> dict:
    found = [d for d in k8s_objects() if d["kind"] == kind
             and all(d["metadata"].get(k) == v for k, v in where.items())]
    assert len(found) == 1, f"expected one {kind} {where or ''}, found {len(found)}"
    return found[0]


def statefulset() -> dict:
    return one("StatefulSet", name="clickstream")


def pod_spec() -> dict:
    return statefulset()["spec"]["template"]["spec"]


def container() -> dict:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict) -> dict:
    return {e["name"]: e for e in c.get("env", [])}


def headless_service() -> dict:
    return one("Service", name=statefulset()["spec"]["serviceName"])


def hostfile_configmap():
    """(ConfigMap, key, mount path of the hostfile) as the StatefulSet wires them."""
    path = env_of(container())["BYTEWAX_HOSTFILE_PATH"]["value"]
    for mount in container()["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        volume = next(v for v in pod_spec()["volumes"] if v["name"] == mount["name"])
        assert "configMap" in volume, f"{path} must come from a ConfigMap volume"
        rel = path[len(prefix):]
        items = volume["configMap"].get("items")
        key = next(i["key"] for i in items if i["path"] == rel) if items else rel
        return one("ConfigMap", name=volume["configMap"]["name"]), key, path
    pytest.fail(f"BYTEWAX_HOSTFILE_PATH={path} is not inside any volume mount")


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str) -> str:
    """A compose value as `docker compose` makes it when no variable is set: `${NAME:-default}`
    and `${NAME-default}` give the default; a bare `${NAME}` or `$NAME` is refused here (it would
    be empty), and `$$` is a literal `$`."""
    def one(match):
        if match.group(0) == "$$":
            return "$"
        if match.group("default") is None:
            name = match.group("name") or match.group("bare")
            pytest.fail(f"{value!r}: ${name} has no default for a local run")
        return match.group("default")

    return re.sub(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)", one, str(value))


def variables_in(value: str) -> set:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", str(value)))


def dockerfile_instructions():
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "Dockerfile ends with a line continuation"
    return out


def final_stage():
    """Instructions of the last build stage."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


# --------------------------------------------------------------- 1. Kubernetes core schemas

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", core_manifest_files(), ids=lambda p: p.name)
def test_kubernetes_manifest_is_valid(path, version):
    kubernetes_validate = require("kubernetes_validate", "kubernetes-validate>=1.37.0")
    docs = documents(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        assert "namespace" not in doc.get("metadata", {}), f"{name}: manifests are namespace-agnostic"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} is invalid for Kubernetes {version} at "
                        f"{'.'.join(map(str, exc.absolute_path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{name}: {exc.message}")


def test_kustomization_lists_every_core_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    assert sorted(kustomization["resources"]) == sorted(p.name for p in core_manifest_files())


def test_kustomization_renders_when_kubectl_is_present():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed; its kustomize is an extra check only")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(result.stdout) if d)
    assert kinds == sorted(d["kind"] for d in k8s_objects())


# ------------------------------------------------------------------------- 2. PodMonitor

def test_podmonitor_scrapes_the_dataflow_pods():
    docs = documents(K8S / "podmonitor.yaml")
    assert len(docs) == 1
    monitor = docs[0]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["name"] and "namespace" not in monitor["metadata"]
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    selector = monitor["spec"]["selector"]
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    assert selector["matchLabels"] and selector["matchLabels"].items() <= pod_labels.items()
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert any(ports.get(e.get("port")) == METRICS_PORT and e.get("path", "/metrics") == "/metrics"
               for e in endpoints), endpoints
    # alerts.yml matches up{job="clickstream"}: the job label comes from this pod label
    assert pod_labels[monitor["spec"]["jobLabel"]] == "clickstream"


# --------------------------------------------------------------------------- 3. compose

def test_compose_file_matches_the_compose_specification():
    check_jsonschema = tool("check-jsonschema", "check-jsonschema>=0.39.0")
    result = subprocess.run(
        [str(check_jsonschema), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_dataflow_as_a_two_process_cluster():
    services = compose()["services"]
    names = ["clickstream-0", "clickstream-1"]
    addresses = ";".join(f"{n}:{CLUSTER_PORT}" for n in names)
    recovery_volumes = set()
    for i, name in enumerate(names):
        s = services[name]
        assert s["command"] == [DATAFLOW_ARGS[0], "-i", str(i), "-a", addresses, *DATAFLOW_ARGS[1:]]
        assert s["restart"] == "on-failure"
        assert s["read_only"] is True and "/tmp" in s["tmpfs"]
        assert s["environment"]["BYTEWAX_DATAFLOW_API_ENABLED"] == "true"
        assert str(s["environment"].get("BYTEWAX_DATAFLOW_API_PORT", METRICS_PORT)) == str(METRICS_PORT)
        assert s["environment"]["CLICKSTREAM_BROKERS"] == "kafka:9092"
        assert s["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert s["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert f"{METRICS_PORT}" in str(s["healthcheck"]["test"])
        [mount] = [v for v in s["volumes"] if v.endswith(":/var/lib/clickstream")]
        recovery_volumes.add(mount.split(":")[0])
    assert len(recovery_volumes) == 2 and recovery_volumes <= set(compose()["volumes"])


def test_compose_services_and_references_are_consistent():
    doc = compose()
    services = doc["services"]
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    kafka_env = services["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert "broker" in kafka_env["KAFKA_PROCESS_ROLES"] and "controller" in kafka_env["KAFKA_PROCESS_ROLES"]
    assert services["topics"]["entrypoint"] + services["topics"]["command"] == \
        ["python", "-m", "clickstream.topics", "--partitions", "4"]
    assert services["topics"]["environment"]["CLICKSTREAM_BROKERS"] == "kafka:9092"
    generator = services["generator"]["entrypoint"] + services["generator"]["command"]
    assert generator[:3] == ["python", "-m", "clickstream.generate"]
    assert {"--rate": "2000", "--count": "100000000", "--brokers": "kafka:9092"}.items() <= \
        dict(zip(generator[3::2], generator[4::2])).items()
    assert services["grafana"]["environment"]["PROMETHEUS_URL"] == "http://prometheus:9090"
    for name, s in services.items():
        for dep, how in s.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health, it has none"
            if how["condition"] == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} must be one-shot"
        if "build" in s:
            context = (COMPOSE_DIR / s["build"]["context"]).resolve()
            assert context == ROOT, "the image's build context is the repository root"
            assert (context / s["build"]["dockerfile"]).resolve() == DOCKERFILE
            assert s["image"] == services["topics"]["image"]
        for volume in s.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: bind mount source {source} missing"
            else:
                assert source in doc["volumes"], f"{name}: volume {source} not declared"


def test_compose_runs_postgres_with_a_volume_and_a_readiness_check():
    doc = compose()
    postgres = doc["services"]["postgres"]
    assert postgres["image"] == "postgres:15"
    env = postgres["environment"]
    assert env["POSTGRES_USER"] == "clickstream" and env["POSTGRES_DB"] == "clickstream"
    # the password from the environment, with a default for local use only
    assert variables_in(env["POSTGRES_PASSWORD"]) == {POSTGRES_PASSWORD_VARIABLE}
    assert interpolate(env["POSTGRES_PASSWORD"])
    [data] = [v for v in postgres["volumes"] if v.split(":")[1] == "/var/lib/postgresql/data"]
    assert data.split(":")[0] in doc["volumes"], "the database lives in a named volume"
    test = postgres["healthcheck"]["test"]
    command = shlex.split(test[1]) if test[0] == "CMD-SHELL" else test[1:]
    assert test[0] in ("CMD", "CMD-SHELL") and command[0] == "pg_isready", test
    flags = dict(zip(command[1::2], command[2::2]))
    assert flags.get("-U") == "clickstream" and flags.get("-d", "clickstream") == "clickstream"
    # over TCP: the image's first start runs a socket-only server for its init scripts
    assert flags.get("-h") in ("127.0.0.1", "localhost"), test
    for port in postgres.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"postgres published beyond loopback: {port}"


def test_compose_dataflow_writes_to_kafka_and_postgres_once_postgres_is_healthy():
    doc = compose()
    services = doc["services"]
    postgres_env = services["postgres"]["environment"]
    for name in DATAFLOW_SERVICES:
        s = services[name]
        assert s["depends_on"]["postgres"]["condition"] == "service_healthy"
        env = {k: interpolate(v) for k, v in s["environment"].items()}
        settings = Settings.from_env(env)  # the service's own parser accepts them
        assert settings.to_kafka and settings.to_postgres
        dsn = conninfo_to_dict(settings.postgres_dsn)
        assert (dsn["host"], str(dsn.get("port", 5432))) == ("postgres", "5432")
        assert dsn["user"] == postgres_env["POSTGRES_USER"]
        assert dsn["dbname"] == postgres_env["POSTGRES_DB"]
        # the password is the server's own, given to libpq as is (no URL-encoding to get wrong)
        assert "password" not in dsn and "$" not in s["environment"]["CLICKSTREAM_POSTGRES_DSN"]
        assert s["environment"]["PGPASSWORD"] == postgres_env["POSTGRES_PASSWORD"]


def test_compose_grafana_gets_the_postgres_password_its_datasource_reads():
    services = compose()["services"]
    grafana = services["grafana"]
    assert grafana["environment"][POSTGRES_PASSWORD_VARIABLE] == \
        services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert grafana["depends_on"]["postgres"]["condition"] == "service_healthy"
    datasources = DEPLOY / "grafana" / "provisioning" / "datasources"
    found = [d for p in sorted(datasources.glob("*.y*ml"))
             for d in yaml.safe_load(p.read_text()).get("datasources", [])
             if d.get("uid") == "clickstream-postgres"]
    if not found:
        pytest.skip("no Grafana datasource with uid clickstream-postgres is provisioned")
    [datasource] = found
    assert datasource["secureJsonData"]["password"] == "${%s}" % POSTGRES_PASSWORD_VARIABLE


def test_compose_prometheus_finds_its_rules_at_the_same_relative_path_in_the_container():
    prometheus = compose()["services"]["prometheus"]
    mounts = {}
    for volume in prometheus["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[PurePosixPath(target)] = (COMPOSE_DIR / source).resolve()
    [config_flag] = [a for a in prometheus["command"] if a.startswith("--config.file=")]
    config_in_container = PurePosixPath(config_flag.split("=", 1)[1])
    assert mounts[config_in_container] == (COMPOSE_DIR / "prometheus.yml").resolve()
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["../prometheus/alerts.yml"]
    for rule_file in config["rule_files"]:
        in_repo = (COMPOSE_DIR / rule_file).resolve()
        in_container = PurePosixPath(*_normalise(config_in_container.parent / rule_file))
        assert in_repo == (DEPLOY / "prometheus" / "alerts.yml").resolve()
        assert mounts.get(in_container) == in_repo, f"{rule_file} resolves to {in_container} in the container"


def _normalise(path: PurePosixPath):
    parts = []
    for part in path.parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return parts


# ----------------------------------------------------------------------- 4. Prometheus

def test_compose_prometheus_config_is_valid_and_scrapes_both_processes():
    if shutil.which("promtool") is None:
        pytest.fail("promtool (Debian's prometheus package) is not installed; .ci/run installs it")
    result = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=COMPOSE_DIR,
                            capture_output=True, text=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "SUCCESS: 1 rule files found" in out and "SUCCESS: 7 rules found" in out, out
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "clickstream"  # alerts.yml: up{job="clickstream"}
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"clickstream-0:{METRICS_PORT}", f"clickstream-1:{METRICS_PORT}"]


# ------------------------------------------------------------------ 5. image and pod spec

def test_dockerfile_builds_a_non_root_multi_stage_image_running_bytewax():
    instructions = dockerfile_instructions()
    text = DOCKERFILE.read_text()
    froms = [args for word, args in instructions if word == "FROM"]
    assert len(froms) >= 2 and all(f.startswith("python:3.11-slim") for f in froms), froms
    build_stage = froms[0].split()[-1]
    assert any(word == "COPY" and f"--from={build_stage}" in args for word, args in final_stage())
    assert any(word == "RUN" and "pip install --no-cache-dir ." in args for word, args in instructions)
    assert not re.search(r"^\s*ADD\s+(--\S+\s+)*https?://", text, re.I | re.M), "no ADD of URLs"

    final = final_stage()
    users = [args for word, args in final if word == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) == UID, f"USER {users[-1]}: use the numeric uid {UID}"
    [entrypoint] = [json.loads(args) for word, args in final if word == "ENTRYPOINT"]
    assert entrypoint == ["python", "-m", "bytewax.run"]
    [cmd] = [json.loads(args) for word, args in final if word == "CMD"]
    assert cmd == ["dataflows.clickstream:flow"]
    exposed = {p.split("/")[0] for word, args in final if word == "EXPOSE" for p in args.split()}
    assert {str(METRICS_PORT), str(CLUSTER_PORT)} <= exposed
    env = " ".join(args for word, args in final if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # bytewax writes dataflow.json to this directory: it must be writable with a read-only root
    assert re.search(r"BYTEWAX_DATAFLOW_API_CACHE_PATH=/tmp\b", env)


def test_dockerfile_copies_only_files_that_exist_and_are_not_ignored():
    ignore_file = DOCKERFILE.with_name("Dockerfile.dockerignore")
    patterns = [line.strip() for line in ignore_file.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for required in (".git", ".venv", ".local"):
        assert required in patterns
    for word, args in dockerfile_instructions():
        if word != "COPY" or "--from=" in args:
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
            for pattern in patterns:
                assert not fnmatch.fnmatch(source, pattern.lstrip("!")), \
                    f"COPY {source} is excluded by {pattern} in {ignore_file.name}"


def test_statefulset_runs_the_dataflow_hardened():
    sts = statefulset()
    spec = sts["spec"]
    assert spec["replicas"] == 2 and spec["podManagementPolicy"] == "Parallel"
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "clickstream"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                           "prometheus.io/path": "/metrics"}
    pod = pod_spec()
    c = container()
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["enableServiceLinks"] is False  # no CLICKSTREAM_* variables from Service names
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc.get("runAsNonRoot", True) is True and sc.get("runAsUser", UID) == UID
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["args"] == DATAFLOW_ARGS
    assert "command" not in c, "the image's ENTRYPOINT runs bytewax.run"
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert c["resources"]["limits"]["memory"] == "2Gi"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"cluster": CLUSTER_PORT, "metrics": METRICS_PORT}
    for probe in ("livenessProbe", "readinessProbe"):
        target = c[probe].get("httpGet") or c[probe].get("tcpSocket")
        assert ports.get(target["port"], target["port"]) == METRICS_PORT, probe
        if "httpGet" in c[probe]:
            assert c[probe]["httpGet"]["path"] == "/metrics"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    [claim] = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == mounts["/var/lib/clickstream"] == "recovery"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_statefulset_process_ids_and_addresses_come_from_bytewax_env():
    sts = statefulset()
    env = env_of(container())
    assert env["BYTEWAX_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["BYTEWAX_STATEFULSET_NAME"]["value"] == sts["metadata"]["name"]
    assert not {"BYTEWAX_PROCESS_ID", "BYTEWAX_ADDRESSES"} & set(env)
    assert not {"-i", "-a", "--process-id", "--addresses"} & set(container()["args"])

    configmap, key, _path = hostfile_configmap()
    lines = configmap["data"][key].splitlines()
    replicas = sts["spec"]["replicas"]
    assert len(lines) == replicas, f"the hostfile must list {replicas} (replicas) addresses"
    name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
    for i, line in enumerate(lines):
        assert re.fullmatch(rf"{name}-{i}\.{service}(\.[a-z0-9.-]+)?:{CLUSTER_PORT}", line), \
            f"hostfile line {i}: {line!r} is not pod {name}-{i} of Service {service} on {CLUSTER_PORT}"


def test_headless_service_lets_the_processes_find_each_other():
    svc = headless_service()
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["cluster"]["port"] == CLUSTER_PORT
    assert ports["cluster"].get("targetPort", CLUSTER_PORT) in ("cluster", CLUSTER_PORT)


def test_settings_come_from_the_configmap_and_credentials_from_the_secret():
    c = container()
    [settings_ref] = [s["configMapRef"]["name"] for s in c["envFrom"] if "configMapRef" in s]
    settings = one("ConfigMap", name=settings_ref)["data"]
    assert settings["BYTEWAX_DATAFLOW_API_ENABLED"] == "true"
    assert settings.get("BYTEWAX_DATAFLOW_API_PORT", str(METRICS_PORT)) == str(METRICS_PORT)
    assert settings["BYTEWAX_DATAFLOW_API_CACHE_PATH"].startswith("/tmp")
    assert "CLICKSTREAM_BROKERS" in settings

    secret = one("Secret", name="clickstream-kafka-credentials")
    assert secret["stringData"] == {"sasl-username": "change-me", "sasl-password": "change-me"}
    secret_words = ("PASSWORD", "USERNAME", "SECRET", "TOKEN", "JAAS", "CREDENTIAL")
    for key in settings:
        assert not any(w in key.upper() for w in secret_words), f"{key} belongs in the Secret"
    env = env_of(c)
    for name in ("CLICKSTREAM_KAFKA_SASL_USERNAME", "CLICKSTREAM_KAFKA_SASL_PASSWORD"):
        assert "value" not in env[name], f"{name} must not be inlined"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    for name, e in env.items():
        if any(w in name for w in secret_words):
            assert "value" not in e and "secretKeyRef" in e["valueFrom"], f"{name} is inlined"
    assert "change-me" not in (K8S / "statefulset.yaml").read_text()


def test_postgres_dsn_comes_from_the_secret_and_the_settings_from_the_configmap():
    c = container()
    [settings_ref] = [s["configMapRef"]["name"] for s in c["envFrom"] if "configMapRef" in s]
    settings = one("ConfigMap", name=settings_ref)["data"]
    assert "postgres" in settings["CLICKSTREAM_OUTPUTS"].split(",")
    assert settings["CLICKSTREAM_POSTGRES_RETENTION_DAYS"] == "90"
    assert "CLICKSTREAM_POSTGRES_DSN" not in settings, "the DSN holds a password: Secret only"

    dsn_env = env_of(c)["CLICKSTREAM_POSTGRES_DSN"]
    assert "value" not in dsn_env, "CLICKSTREAM_POSTGRES_DSN must not be inlined"
    ref = dsn_env["valueFrom"]["secretKeyRef"]
    assert ref.get("optional", False) is False
    secret = one("Secret", name=ref["name"])
    assert ref["key"] == "postgres-dsn" and ref["key"] in secret["stringData"]
    placeholder = secret["stringData"][ref["key"]]
    assert "change-me" in placeholder, "the Secret's DSN is a placeholder, clearly marked"
    parsed = conninfo_to_dict(placeholder)
    assert parsed["host"] and parsed["dbname"] and parsed["user"] and parsed["password"]
    # no DSN or password written into the pod spec or any other core manifest
    for path in core_manifest_files():
        if path.name != "secret.yaml":
            text = path.read_text()
            assert not re.search(r"postgres(ql)?://", text), f"{path.name} holds a DSN"
            assert placeholder not in text

    # what the pod gets, through the service's own parser
    env = dict(settings, CLICKSTREAM_POSTGRES_DSN=placeholder,
               CLICKSTREAM_KAFKA_SASL_USERNAME="u", CLICKSTREAM_KAFKA_SASL_PASSWORD="p")
    parsed_settings = Settings.from_env(env)
    assert parsed_settings.to_kafka and parsed_settings.to_postgres
    assert parsed_settings.postgres_retention_days == 90
    assert parsed_settings.session_topic == "user-sessions"
    assert parsed["password"] not in parsed_settings.dsn_shown


def test_every_secret_reference_names_a_key_of_a_secret_in_the_manifests():
    for e in container().get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in one("Secret", name=ref["name"])["stringData"], e["name"]


def test_kubernetes_and_image_agree_on_user_and_ports():
    users = [args for word, args in final_stage() if word == "USER"]
    assert int(users[-1].split(":")[0]) == pod_spec()["securityContext"]["runAsUser"]
    exposed = {int(p.split("/")[0]) for word, args in final_stage() if word == "EXPOSE" for p in args.split()}
    assert {p["containerPort"] for p in container()["ports"]} <= exposed
