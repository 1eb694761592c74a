"""Static checks of the deployment files under cluster/: no cluster, Docker or network.

What a typo in these files costs is a failed image build or a cluster that starts,
bills, and fails its job minutes later; these tests catch what can be caught here:
the YAML parses, the cluster layouts are what the jobs need, every RayJob's command
line is accepted by the module it runs, the runtime envs are accepted by Ray and do
not clash with the one pipelines/_ray.py sets, the Dockerfile pins match
pyproject.toml, the `ray up` config passes Ray's own schema, and nothing looks like a
credential.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
DOCKERFILE = CLUSTER / "Dockerfile"
AWS_CONFIG = CLUSTER / "aws" / "cluster.yaml"
RUNTIME_ENV = CLUSTER / "runtime_env.yaml"
JOBS = ("ingest", "train", "index")
GPU = "nvidia.com/gpu"
SECRET_NAME = "genre-batch-s3"
IMAGE_PLACEHOLDER = "ghcr.io/YOUR_ORG/genre-batch"

# Field names of KubeRay's ray.io/v1 types (ray-operator/apis/ray/v1/*_types.go): a
# misspelt field is pruned or rejected by the API server, never by a local tool.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
    "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy",
    "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources",
    "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend",
}
RAYCLUSTER_SPEC_FIELDS = {
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
    "autoscalerOptions", "headServiceAnnotations", "suspend", "authOptions",
    "gcsFaultToleranceOptions", "managedBy", "upgradeStrategy",
}
WORKER_GROUP_FIELDS = {
    "groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
    "template", "scaleStrategy", "suspend", "idleTimeoutSeconds",
}


# ---------------------------------------------------------------- helpers
def load_yaml(path: Path) -> Any:
    with path.open() as handle:
        return yaml.safe_load(handle)


def pyproject_pins() -> dict[str, str]:
    """`name==version` pins of pyproject.toml's dependencies, by package name (extras dropped)."""
    with (REPO / "pyproject.toml").open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    pins = {}
    for requirement in dependencies:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^;\s]+)", requirement.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def gpus_per_pod(group: dict) -> int:
    total = 0
    for container in containers(group["template"]):
        limits = container.get("resources", {}).get("limits", {})
        total += int(limits.get(GPU, 0))
    return total


def gpu_groups(cluster_spec: dict) -> list[dict]:
    return [group for group in cluster_spec.get("workerGroupSpecs", []) if gpus_per_pod(group) > 0]


def cpu_groups(cluster_spec: dict) -> list[dict]:
    return [group for group in cluster_spec.get("workerGroupSpecs", []) if gpus_per_pod(group) == 0]


def all_pod_templates(cluster_spec: dict) -> list[dict]:
    return [cluster_spec["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster_spec.get("workerGroupSpecs", [])
    ]


def rayjob(job: str) -> dict:
    return load_yaml(KUBERAY / f"rayjob-{job}.yaml")


def entrypoint_argv(job_manifest: dict) -> tuple[str, list[str]]:
    """`python -m pipelines.X ARGS...` -> ("pipelines.X", ARGS)."""
    words = shlex.split(job_manifest["spec"]["entrypoint"])
    assert words[:2] == ["python", "-m"], f"entrypoint must start with `python -m`: {words}"
    return words[2], words[3:]


def parse_with_module(module_name: str, argv: list[str]) -> argparse.Namespace:
    """Parse argv with the module's own argument definitions, as `python -m module` would."""
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m {module_name}")
    module.add_arguments(parser)
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports to stderr and exits 2
        pytest.fail(f"{module_name} rejects {argv}: exit {exc.code}")


def driver_runtime_env(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The runtime_env that pipelines/_ray.py passes to ray.init inside a job (captured, not run)."""
    import ray

    from pipelines import _ray

    captured: dict = {}
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)  # restored after the test
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: captured.update(kwargs))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    monkeypatch.setattr(_ray, "quiet_ray_data", lambda: None)
    monkeypatch.setattr(_ray, "check_reachable", lambda address: None)  # nothing listens there
    _ray.ensure_ray(address="ray://captured-not-connected:10001")
    return captured.get("runtime_env") or {}


def assert_merges_with_driver(job_env: dict, driver_env: dict, where: str) -> None:
    """Ray merges a job's runtime env with the driver's ray.init one, and fails the job
    (ValueError at ray.init) when both set the same field or the same env var."""
    from ray.runtime_env.runtime_env import _merge_runtime_env

    merged = _merge_runtime_env(job_env, driver_env)
    assert merged is not None, (
        f"{where} conflicts with the runtime env of pipelines/_ray.py {driver_env}: "
        f"every job would fail at ray.init"
    )


# ---------------------------------------------------------------- all YAML
EXPECTED_YAML = [
    RUNTIME_ENV,
    AWS_CONFIG,
    KUBERAY / "raycluster.yaml",
    *(KUBERAY / f"rayjob-{job}.yaml" for job in JOBS),
]


def test_expected_files_exist() -> None:
    for path in [*EXPECTED_YAML, DOCKERFILE, CLUSTER / "Dockerfile.dockerignore", CLUSTER / "README.md"]:
        assert path.is_file(), f"missing {path.relative_to(REPO)}"


@pytest.mark.parametrize(
    "path",
    sorted([*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml")]),
    ids=lambda p: str(p.relative_to(CLUSTER)),
)
def test_yaml_parses(path: Path) -> None:
    with path.open() as handle:
        documents = [doc for doc in yaml.safe_load_all(handle) if doc is not None]
    assert documents, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in documents)
    # Credentials belong in Secrets created by hand, never in a committed manifest.
    assert not [doc for doc in documents if doc.get("kind") == "Secret"], f"{path} defines a Secret"


# ---------------------------------------------------------------- KubeRay
def check_cluster_spec(spec: dict, where: str) -> None:
    """What every Ray cluster of ours needs, embedded in a RayJob or standalone."""
    assert set(spec) <= RAYCLUSTER_SPEC_FIELDS, f"{where}: unknown fields {set(spec) - RAYCLUSTER_SPEC_FIELDS}"
    assert spec["rayVersion"] == pyproject_pins()["ray"], f"{where}: rayVersion differs from the ray pin"
    head = spec["headGroupSpec"]
    assert str(head["rayStartParams"].get("num-cpus")) == "0", f"{where}: the head must get no Ray work"
    head_ports = {port["containerPort"] for port in containers(head["template"])[0].get("ports", [])}
    assert 8265 in head_ports, f"{where}: the head must expose the job API (8265)"
    for group in spec.get("workerGroupSpecs", []):
        assert set(group) <= WORKER_GROUP_FIELDS, f"{where}: unknown fields in {group.get('groupName')}"
        low, high = group.get("minReplicas", 0), group["maxReplicas"]
        assert 0 <= low <= group.get("replicas", 0) <= high, f"{where}: replicas of {group['groupName']}"
    for group in gpu_groups(spec):
        gpus = gpus_per_pod(group)
        declared = group["rayStartParams"].get("num-gpus")
        assert declared is None or int(declared) == gpus, f"{where}: num-gpus != {GPU} limit"
        for container in containers(group["template"]):
            requests = container.get("resources", {}).get("requests", {})
            if GPU in requests:
                assert int(requests[GPU]) == int(container["resources"]["limits"][GPU])
    for template in all_pod_templates(spec):
        for container in containers(template):
            assert container["image"].startswith(IMAGE_PLACEHOLDER + ":"), (
                f"{where}: image {container['image']} is not the marked placeholder"
            )
            secret_refs = [source["secretRef"]["name"] for source in container.get("envFrom", [])
                           if "secretRef" in source]
            assert secret_refs == [SECRET_NAME], f"{where}: S3 credentials must come from Secret {SECRET_NAME}"
            assert not any(re.match(r"AWS_(SECRET|ACCESS|SESSION)", env.get("name", ""))
                           and "value" in env for env in container.get("env", [])), (
                f"{where}: AWS credentials given as plain env values"
            )
    for group in gpu_groups(spec):
        for container in containers(group["template"]):
            assert container["image"].endswith("-gpu"), f"{where}: GPU pods should run the -gpu image"


def test_raycluster_has_head_cpu_and_gpu_groups() -> None:
    manifest = load_yaml(KUBERAY / "raycluster.yaml")
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayCluster"
    spec = manifest["spec"]
    check_cluster_spec(spec, "raycluster.yaml")
    assert spec.get("enableInTreeAutoscaling") is True
    assert cpu_groups(spec), "no CPU worker group"
    assert gpu_groups(spec), f"no worker group requests {GPU}"
    for group in spec["workerGroupSpecs"]:
        assert group["maxReplicas"] > group.get("minReplicas", 0), f"{group['groupName']} cannot autoscale"


@pytest.mark.parametrize("job", JOBS)
def test_rayjob_shape(job: str) -> None:
    manifest = rayjob(job)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] == "RayJob"
    spec = manifest["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, f"unknown RayJob fields {set(spec) - RAYJOB_SPEC_FIELDS}"
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec["ttlSecondsAfterFinished"], int) and spec["ttlSecondsAfterFinished"] > 0
    # Exactly one way to get a cluster; ours embed it (shutdownAfterJobFinishes only
    # deletes clusters the RayJob created).
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)
    assert "rayClusterSpec" in spec
    check_cluster_spec(spec["rayClusterSpec"], f"rayjob-{job}.yaml")
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict) and runtime_env.get("env_vars"), "runtimeEnvYAML sets no env vars"


@pytest.mark.parametrize("job", JOBS)
def test_rayjob_entrypoint_is_accepted_by_its_module(job: str) -> None:
    module_name, argv = entrypoint_argv(rayjob(job))
    assert module_name == f"pipelines.{job}"
    assert (REPO / "pipelines" / f"{job}.py").is_file()
    args = parse_with_module(module_name, argv)
    uris = [value for value in vars(args).values() if isinstance(value, str) and "://" in value]
    assert uris and all(uri.startswith("s3://YOUR_BUCKET/") for uri in uris), f"placeholder URIs: {uris}"
    assert args.address is None, "inside a job RAY_ADDRESS is set; --address would only go stale"


def test_rayjob_train_gpus_match_workers() -> None:
    manifest = rayjob("train")
    _, argv = entrypoint_argv(manifest)
    args = parse_with_module("pipelines.train", argv)
    assert args.use_gpu is True and args.workers >= 1, "train on the cluster should use --workers N --gpu"
    groups = gpu_groups(manifest["spec"]["rayClusterSpec"])
    startable = sum(group["maxReplicas"] * gpus_per_pod(group) for group in groups)
    assert args.workers <= startable, f"--workers {args.workers} but at most {startable} GPUs"
    present = sum(group.get("minReplicas", 0) * gpus_per_pod(group) for group in groups)
    assert present == args.workers, "the GPU group should be fixed at exactly --workers GPUs"


def test_rayjob_index_has_gpus_before_it_starts() -> None:
    # predict_songs sizes its actor pool from the GPUs present at start: from 0 it uses CPUs.
    manifest = rayjob("index")
    _, argv = entrypoint_argv(manifest)
    if parse_with_module("pipelines.index", argv).use_gpu:
        groups = gpu_groups(manifest["spec"]["rayClusterSpec"])
        assert sum(group.get("minReplicas", 0) * gpus_per_pod(group) for group in groups) >= 1


def test_rayjob_ingest_has_cpu_workers() -> None:
    spec = rayjob("ingest")["spec"]["rayClusterSpec"]
    assert cpu_groups(spec), "ingest needs CPU workers (the head takes no work)"


@pytest.mark.parametrize("job", JOBS)
def test_entry_point_answers_help(job: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"pipelines.{job}", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--root" in result.stdout


# ---------------------------------------------------------------- runtime envs
def test_runtime_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.runtime_env import RuntimeEnv

    runtime_env = load_yaml(RUNTIME_ENV)
    assert runtime_env.get("env_vars"), "no env_vars"
    assert all(isinstance(v, str) for v in runtime_env["env_vars"].values()), "env var values must be strings"
    excludes = runtime_env.get("excludes") or []
    for needed in (".venv/", ".git/"):
        assert needed in excludes
    assert "working_dir" not in runtime_env, "working_dir comes from --working-dir"
    RuntimeEnv(**runtime_env)  # Ray's own validation of the fields
    assert_merges_with_driver(runtime_env, driver_runtime_env(monkeypatch), "cluster/runtime_env.yaml")


@pytest.mark.parametrize("job", JOBS)
def test_rayjob_runtime_env_merges_with_driver(job: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.runtime_env import RuntimeEnv

    runtime_env = yaml.safe_load(rayjob(job)["spec"]["runtimeEnvYAML"])
    RuntimeEnv(**runtime_env)
    assert_merges_with_driver(runtime_env, driver_runtime_env(monkeypatch), f"rayjob-{job}.yaml runtimeEnvYAML")


def test_working_dir_upload_is_small_and_has_the_code() -> None:
    """What `ray job submit --working-dir .` would upload with our excludes and .gitignore."""
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, _dir_travel, _get_excludes

    excludes = load_yaml(RUNTIME_ENV)["excludes"]
    uploaded: list[Path] = []
    _dir_travel(REPO, [_get_excludes(REPO, excludes)], lambda p: p.is_file() and uploaded.append(p),
                include_gitignore=True)
    relative = {p.relative_to(REPO).as_posix() for p in uploaded}
    assert "pipelines/ingest.py" in relative and "genre_batch/__init__.py" in relative
    assert not [p for p in relative if p.startswith((".venv/", ".git/", "tests/"))]
    total = sum(p.stat().st_size for p in uploaded)
    assert total < GCS_STORAGE_MAX_SIZE, f"working_dir upload {total / 2**20:.0f} MiB is over Ray's limit"


# ---------------------------------------------------------------- Dockerfile
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments, including those inside a continued RUN
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            keyword, _, rest = pending.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_args() -> dict[str, str]:
    args = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
    return args


def test_dockerfile_base_image_matches_ray_pin() -> None:
    pins = pyproject_pins()
    base = dockerfile_args()["BASE_IMAGE"]
    assert base == f"rayproject/ray:{pins['ray']}-py311"
    assert "requires-python = \">=3.11" in (REPO / "pyproject.toml").read_text()
    stages = [rest for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert stages and all(stage.split()[0] == "${BASE_IMAGE}" for stage in stages)
    assert f"rayproject/ray:{pins['ray']}-py311-gpu" in DOCKERFILE.read_text(), "GPU base not documented"


def test_dockerfile_pins_torch_like_pyproject() -> None:
    pins, args = pyproject_pins(), dockerfile_args()
    assert args["TORCH_VERSION"] == pins["torch"] == "2.11.0"
    assert args["TORCHAUDIO_VERSION"] == pins["torchaudio"]
    runs = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs and '"torchaudio==${TORCHAUDIO_VERSION}"' in runs
    assert args.get("TORCH_INDEX_URL", "") == "", "the default build must use PyPI's pinned wheels"


def test_dockerfile_builds_annoy_portably() -> None:
    pins, args = pyproject_pins(), dockerfile_args()
    assert args["ANNOY_VERSION"] == pins["annoy"]
    runs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN"]
    annoy_build = [run for run in runs if "ANNOY_COMPILER_ARGS=" in run]
    assert len(annoy_build) == 1, "annoy must be compiled with ANNOY_COMPILER_ARGS"
    flags = re.search(r'ANNOY_COMPILER_ARGS="([^"]+)"', annoy_build[0]).group(1).split(",")
    # annoy's setup.py replaces ALL its flags with these: keep its optimisation and threading.
    assert "native" not in annoy_build[0]
    assert any(flag.startswith("-march=") for flag in flags)
    for needed in ("-O3", "-std=c++14", "-DANNOYLIB_MULTITHREADED_BUILD"):
        assert needed in flags
    assert "--no-binary annoy" in annoy_build[0]


def test_dockerfile_installs_the_package_with_writable_numba_cache() -> None:
    instructions = dockerfile_instructions()
    copied = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    for needed in ("pyproject.toml", "genre_batch", "pipelines"):
        assert needed in copied
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    assert any(re.search(r"pip install (--\S+ )*\.(\s|$)", run) for run in runs), "no `pip install .`"
    envs = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    match = re.search(r"NUMBA_CACHE_DIR=(\S+)", envs)
    assert match and match.group(1).startswith("/tmp/"), "NUMBA_CACHE_DIR must point somewhere writable"


def test_the_cluster_sets_ray_trains_poll_interval_as_a_local_ray_does() -> None:
    """A finished training run is noticed within RAY_TRAIN_ENV's interval on a cluster too:
    the job's runtime env and the image set what ensure_ray sets for a local Ray."""
    from pipelines._ray import RAY_TRAIN_ENV

    envs = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "ENV")
    for key, value in RAY_TRAIN_ENV.items():
        assert load_yaml(RUNTIME_ENV)["env_vars"].get(key) == value, f"cluster/runtime_env.yaml: {key}"
        assert f"{key}={value}" in envs, f"cluster/Dockerfile: ENV {key}={value}"


# ---------------------------------------------------------------- ray up (AWS)
def test_aws_cluster_config() -> None:
    import jsonschema
    import ray.autoscaler

    config = load_yaml(AWS_CONFIG)
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    assert config["provider"]["type"] == "aws"
    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head must get no Ray work"
    workers = {name: spec for name, spec in node_types.items() if name != config["head_node_type"]}
    families = {name: spec["node_config"]["InstanceType"].split(".")[0] for name, spec in workers.items()}
    gpu_types = [name for name, family in families.items() if re.match(r"(g\d|p\d)", family)]
    cpu_types = [name for name, family in families.items() if re.match(r"(c|m|r)\d", family)]
    assert gpu_types and cpu_types, f"need CPU and GPU worker types, got {families}"
    for name, spec in workers.items():
        assert spec.get("min_workers", 0) <= spec["max_workers"]
        # Ray's default instance profile goes to the head only: workers need their own for S3.
        assert "IamInstanceProfile" in spec["node_config"], f"{name} has no instance profile (no S3 access)"
    assert config["max_workers"] >= sum(spec["max_workers"] for spec in workers.values())
    assert config["docker"]["image"].startswith(IMAGE_PLACEHOLDER + ":")
    for name in gpu_types:
        assert node_types[name]["docker"]["worker_image"].endswith("-gpu")
    assert not config.get("file_mounts")


# ---------------------------------------------------------------- no credentials
CREDENTIAL_PATTERNS = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key ids
    # a value (not a $VARIABLE reference) after a secret-looking key
    re.compile(r"(?i)(secret_access_key|session_token|auth_token|password)[\"']?\s*[:=]\s*[\"']?(?![\"'$<{])[A-Za-z0-9/+=]{16,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(ghp|gho|github_pat|glpat|xox[abprs])[-_][A-Za-z0-9_-]{20,}"),
    # 40-character base64 run with upper, lower and digits: the shape of an AWS secret key
    re.compile(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*\d)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
]


def credential_findings(text: str) -> list[str]:
    return [match.group(0) for pattern in CREDENTIAL_PATTERNS for match in pattern.finditer(text)]


def test_credential_patterns_catch_fakes() -> None:
    fake_id = "AKIA" + "Z" * 16
    fake_secret = "wJalrXUtnFEMI" + "K7MDENG" + "bPxRfiCYEXAMPLE" + "KEY0" + "aB1"
    assert credential_findings(f"aws_access_key_id = {fake_id}")
    assert credential_findings(f"AWS_SECRET_ACCESS_KEY: {fake_secret}")
    assert credential_findings(f"key {fake_secret[:40]} end")
    assert not credential_findings('--from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"')


@pytest.mark.parametrize(
    "path",
    sorted(p for p in CLUSTER.rglob("*") if p.is_file()),
    ids=lambda p: str(p.relative_to(CLUSTER)),
)
def test_no_credentials_in_cluster_files(path: Path) -> None:
    findings = credential_findings(path.read_text(errors="replace"))
    assert not findings, f"{path.relative_to(REPO)} contains what looks like a credential: {findings}"


# ---------------------------------------------------------------- nightly (CronJob -> RayJob)
NIGHTLY = KUBERAY / "nightly-cronjob.yaml"
CRON_FIELD_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute hour day month weekday


def nightly_documents() -> dict[str, dict]:
    """The nightly file's documents by kind (one of each)."""
    with NIGHTLY.open() as handle:
        documents = [doc for doc in yaml.safe_load_all(handle) if doc is not None]
    kinds = [doc["kind"] for doc in documents]
    assert len(kinds) == len(set(kinds)), f"one document per kind expected, got {kinds}"
    return {doc["kind"]: doc for doc in documents}


def nightly_rayjob() -> dict:
    """The RayJob template the CronJob's submitter creates each night (ConfigMap key rayjob.yaml)."""
    return yaml.safe_load(nightly_documents()["ConfigMap"]["data"]["rayjob.yaml"])


def cron_field_is_valid(field: str, low: int, high: int) -> bool:
    """One field of a numeric 5-field cron expression: *, N, N-M, with /step, comma lists."""
    for part in field.split(","):
        match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
        if not match:
            return False
        start, end, step = match.group(2), match.group(3), match.group(4)
        if step is not None and int(step) < 1:
            return False
        if start is not None:
            first, last = int(start), int(end) if end is not None else int(start)
            if not (low <= first <= last <= high):
                return False
    return True


def cron_is_valid(expression: str) -> bool:
    fields = expression.split()
    return len(fields) == 5 and all(
        cron_field_is_valid(field, low, high) for field, (low, high) in zip(fields, CRON_FIELD_RANGES)
    )


def test_cron_validator_rejects_bad_schedules() -> None:
    assert cron_is_valid("0 3 * * *") and cron_is_valid("*/15 1-5 1,15 * 1-5")
    for bad in ("0 3 * *", "60 3 * * *", "0 24 * * *", "0 3 0 * *", "0 3 * 13 *", "@daily", "0 3 * * * *", "*/0 3 * * *"):
        assert not cron_is_valid(bad), bad


def test_nightly_file_has_the_expected_documents() -> None:
    documents = nightly_documents()
    assert set(documents) == {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "CronJob"}
    assert documents["CronJob"]["apiVersion"] == "batch/v1", "CronJob: the stable API, not a beta one"


def test_nightly_cronjob_schedule_and_overlap_policy() -> None:
    spec = nightly_documents()["CronJob"]["spec"]
    assert cron_is_valid(spec["schedule"]), f"not a 5-field cron expression: {spec['schedule']!r}"
    # Two nightly runs would race to publish ingest/index versions.
    assert spec["concurrencyPolicy"] == "Forbid"
    assert isinstance(spec.get("startingDeadlineSeconds"), int) and spec["startingDeadlineSeconds"] > 0
    for limit in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        assert isinstance(spec.get(limit), int) and spec[limit] >= 1, f"{limit} missing"
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0, "a retried submitter would create a second RayJob"
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    # The submitter waits for its RayJob (that is what makes Forbid cover the Ray job), so
    # its own deadline must outlast the RayJob's.
    assert job["activeDeadlineSeconds"] > nightly_rayjob()["spec"]["activeDeadlineSeconds"]


def test_nightly_rayjob_template_shape() -> None:
    manifest = nightly_rayjob()
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    metadata = manifest["metadata"]
    assert "name" not in metadata and metadata["generateName"].endswith("-"), "each night needs a new name"
    labels = metadata["labels"]
    spec = manifest["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS, f"unknown RayJob fields {set(spec) - RAYJOB_SPEC_FIELDS}"
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["backoffLimit"] == 0
    assert "rayClusterSpec" in spec and "clusterSelector" not in spec
    check_cluster_spec(spec["rayClusterSpec"], "nightly-cronjob.yaml rayjob.yaml")
    assert cpu_groups(spec["rayClusterSpec"]), "nightly ingest needs CPU workers (the head takes no work)"
    # The submitter finds earlier nightly RayJobs by these labels.
    script = nightly_documents()["ConfigMap"]["data"]["submit.sh"]
    for key, value in labels.items():
        assert f"{key}={value}" in script, f"submit.sh does not select on {key}={value}"


def test_nightly_entrypoint_is_accepted_by_pipelines_nightly() -> None:
    module_name, argv = entrypoint_argv(nightly_rayjob())
    assert module_name == "pipelines.nightly"
    args = parse_with_module(module_name, argv)
    assert args.catalogue.startswith("s3://YOUR_BUCKET/") and args.root.startswith("s3://YOUR_BUCKET/")
    assert args.address is None, "inside a job RAY_ADDRESS is set; --address would only go stale"
    # The nightly must write where the one-off jobs published (the same --root).
    _, index_argv = entrypoint_argv(rayjob("index"))
    assert args.root == parse_with_module("pipelines.index", index_argv).root


def test_nightly_runtime_env_merges_with_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.runtime_env import RuntimeEnv

    runtime_env = yaml.safe_load(nightly_rayjob()["spec"]["runtimeEnvYAML"])
    RuntimeEnv(**runtime_env)
    assert_merges_with_driver(runtime_env, driver_runtime_env(monkeypatch), "nightly rayjob.yaml runtimeEnvYAML")


def test_nightly_submitter_rbac_and_mounts_fit_together() -> None:
    documents = nightly_documents()
    account = documents["ServiceAccount"]["metadata"]["name"]
    pod = documents["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account
    binding = documents["RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": documents["Role"]["metadata"]["name"]}
    assert {"kind": "ServiceAccount", "name": account} in binding["subjects"]
    granted = {verb for rule in documents["Role"]["rules"] if "ray.io" in rule["apiGroups"]
               and "rayjobs" in rule["resources"] for verb in rule["verbs"]}
    assert {"create", "get", "list"} <= granted, f"the submitter cannot create/watch RayJobs: {granted}"
    assert all(rule["apiGroups"] == ["ray.io"] for rule in documents["Role"]["rules"]), "least privilege"

    (container,) = pod["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    config_volumes = [volume for volume in pod["volumes"] if "configMap" in volume]
    assert [volume["configMap"]["name"] for volume in config_volumes] == [documents["ConfigMap"]["metadata"]["name"]]
    mounted_at = mounts[config_volumes[0]["name"]]
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    assert env["TEMPLATE"] == f"{mounted_at}/rayjob.yaml"
    assert container["command"][-1] == f"{mounted_at}/submit.sh"
    # The submitter talks to the Kubernetes API only: no S3 credentials in its pod.
    assert "envFrom" not in container
    assert not [name for name in env if name.startswith("AWS_")]


def test_nightly_submit_script_is_valid_shell(tmp_path: Path) -> None:
    import shutil

    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no sh here")
    script = tmp_path / "submit.sh"
    script.write_text(nightly_documents()["ConfigMap"]["data"]["submit.sh"])
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_nightly_file_has_no_credentials() -> None:
    text = NIGHTLY.read_text()
    assert not credential_findings(text)
    assert not credential_findings(nightly_documents()["ConfigMap"]["data"]["rayjob.yaml"])


def test_readme_documents_the_nightly() -> None:
    readme = (CLUSTER / "README.md").read_text()
    assert "nightly-cronjob.yaml" in readme
    joined = re.sub(r"\\\n\s*", " ", readme)  # shell line continuations
    match = re.search(r"ray job submit [^\n]*? -- python -m pipelines\.nightly ([^\n]*)", joined)
    assert match, "cluster/README.md lacks the `ray job submit ... -- python -m pipelines.nightly` command"
    args = parse_with_module("pipelines.nightly", shlex.split(match.group(1)))
    assert args.catalogue.startswith("s3://YOUR_BUCKET/") and args.root.startswith("s3://YOUR_BUCKET/")


def test_nightly_entry_point_answers_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.nightly", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--catalogue" in result.stdout and "--root" in result.stdout


# ---------------------------------------------------------------- RayService (genre-batch serve)
def test_rayservice_runs_the_serve_application_with_settings_it_accepts() -> None:
    manifest = load_yaml(KUBERAY / "rayservice.yaml")
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    check_cluster_spec(manifest["spec"]["rayClusterConfig"], "rayservice.yaml")
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    (application,) = serve_config["applications"]
    module_name, _, attribute = application["import_path"].partition(":")
    builder = getattr(importlib.import_module(module_name), attribute)
    args = application["args"]
    assert args["root"].startswith("s3://YOUR_BUCKET/")
    built = builder(args)  # the builder's own checks (ServeConfig) pass; nothing is deployed
    assert type(built).__name__ == "Application"
    assert serve_config["http_options"]["port"] == 8000
