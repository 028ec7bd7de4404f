"""The kustomize overlays: they render, every object is sound, and they agree with the configuration.

Rendering uses the kubectl that scripts/check-manifests.sh installs (build/tools/venv, pinned), else a
kubectl on PATH. Schema validation and checkov run here too when check-manifests.sh installed them (CI
runs that script first); every other check needs only the rendering tool.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from packwise import __version__
from packwise.config import PackwiseConfig, parse_config

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "build" / "tools" / "venv" / "bin"
OVERLAYS = sorted(p.name for p in (ROOT / "manifests" / "overlays").iterdir() if p.is_dir())
SECRETISH = ("KEY", "SECRET", "PASSWORD", "TOKEN")
# Images not built by Packwise (no release tag of ours): the mc of KFP 2.14's MinIO release line.
THIRD_PARTY_IMAGES = {"minio/mc:RELEASE.2019-08-07T23-14-43Z", "postgres:16.4-alpine"}
MINIO_ROOT_SECRET = "mlpipeline-minio-artifact"


def _kubectl() -> str | None:
    pinned = TOOLS / "kubectl"
    if pinned.exists():
        return str(pinned)
    return shutil.which("kubectl")


@cache
def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("no kubectl to run kustomize: run scripts/check-manifests.sh (installs a pinned one)")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if o["kind"] == kind]


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects(overlay, kind) if o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"{overlay}: expected one {kind} {name}, found {len(found)}"
    return found[0]


def config_of(overlay: str) -> PackwiseConfig:
    cm = one(overlay, "ConfigMap", "packwise-config")
    return parse_config(yaml.safe_load(cm["data"]["packwise.yaml"]), f"{overlay} packwise-config")


def pod_specs(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for obj in render(overlay):
        if obj["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            specs.append((f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
    return specs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_object_has_a_namespace(overlay: str) -> None:
    docs = render(overlay)
    assert len(docs) >= 12
    for obj in docs:
        if obj["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"].get("namespace") in {"packwise", "kubeflow"}, obj["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for name, spec in pod_specs(overlay):
        for container in spec.get("initContainers", []) + spec["containers"]:
            res = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{overlay} {name}: {part}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_credentials_are_only_secret_references(overlay: str) -> None:
    assert objects(overlay, "Secret") == [], "no Secret values in the manifests"
    for name, spec in pod_specs(overlay):
        for container in spec["containers"]:
            for env in container.get("env", []):
                if any(word in env["name"] for word in SECRETISH):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{overlay} {name}: {env['name']}"
    # names of Secret keys (cluster.secret_keys) may appear; values may not
    names = set(config_of(overlay).cluster.secret_keys)
    for cm in objects(overlay, "ConfigMap"):
        text = yaml.safe_dump(cm.get("data", {}))
        for name in names:
            text = text.replace(name, "")
        assert "AWS_SECRET_ACCESS_KEY" not in text and "password" not in text.lower()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configuration_matches_the_objects(overlay: str) -> None:
    config = config_of(overlay)  # a valid PackwiseConfig: unknown keys would fail here
    cluster = config.cluster
    ns = cluster.namespace
    sa = one(overlay, "ServiceAccount", cluster.service_account)
    assert sa["metadata"]["namespace"] == ns
    binding = one(overlay, "RoleBinding", cluster.service_account)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": cluster.service_account, "namespace": ns}]
    env_cm = one(overlay, "ConfigMap", "packwise-env")
    assert env_cm["metadata"]["name"] == cluster.env_config_map  # no hash suffix: compiled into the pipelines
    assert env_cm["metadata"]["namespace"] == ns
    assert set(env_cm["data"]) <= set(cluster.env_keys)
    # tasks share no volume: storage is an object store, the warehouse a server
    assert isinstance(config.storage.root, str) and config.storage.root.startswith("s3://")
    assert config.warehouse.backend != "duckdb"
    claims = {c["metadata"]["name"] for c in objects(overlay, "PersistentVolumeClaim")}
    assert "packwise-storage" not in claims
    for name, spec in pod_specs(overlay):
        for container in spec["containers"]:
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            assert not any(m.startswith("/mnt/packwise") for m in mounts), name
    watcher = one(overlay, "Deployment", "packwise-watcher")
    volumes = watcher["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("configMap", {}).get("name", "").startswith("packwise-config") for v in volumes)
    assert cluster.trigger.bucket, "the watcher needs a trigger bucket"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_is_least_privilege(overlay: str) -> None:
    for role in objects(overlay, "Role") + objects(overlay, "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], role["metadata"]["name"]
            assert not {"escalate", "bind", "impersonate", "delete", "deletecollection"} & set(rule["verbs"])
            if "secrets" in rule["resources"]:
                assert rule.get("resourceNames") and rule["verbs"] == ["get"]
                assert MINIO_ROOT_SECRET not in rule["resourceNames"], "MinIO's root keys stay MinIO's"
            # no pod permission at all: a task could otherwise read or patch KFP's own pods in `kubeflow`
            assert not {"pods", "pods/log", "pods/exec"} & set(rule["resources"]), role["metadata"]["name"]
    assert objects(overlay, "ClusterRole") == [] and objects(overlay, "ClusterRoleBinding") == []
    for name, spec in pod_specs(overlay):
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_carry_the_release_tag(overlay: str) -> None:
    for name, spec in pod_specs(overlay):
        for container in spec["containers"]:
            if container["image"] not in THIRD_PARTY_IMAGES:
                assert container["image"].endswith(f":{__version__}"), name


def test_kind_uses_kfps_minio_and_runs_mlflow() -> None:
    config = config_of("kind")
    assert config.cluster.trigger.endpoint_url == "http://minio-service.kubeflow.svc.cluster.local:9000"
    assert config.cluster.trigger.bucket == "mlpipeline"
    assert config.cluster.pipeline_root is None  # KFP's default: minio://mlpipeline
    assert config.registry.tracking_uri == "http://mlflow.packwise.svc.cluster.local:5000"
    one("kind", "Deployment", "mlflow")
    one("kind", "PersistentVolumeClaim", "mlflow-store")
    one("kind", "Job", "packwise-seed")
    # storage.root in KFP's MinIO, reached through the standard AWS SDK endpoint setting, with the runner's user
    assert config.storage.root == "s3://mlpipeline/packwise/storage"
    env = one("kind", "ConfigMap", "packwise-env")["data"]
    assert env["AWS_ENDPOINT_URL_S3"] == config.cluster.trigger.endpoint_url
    assert "AWS_ENDPOINT_URL_S3" in config.cluster.env_keys
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(config.cluster.secret_keys)
    # the warehouse: the in-cluster PostgreSQL, its DSN a Secret key
    assert config.warehouse.backend == "postgres" and config.warehouse.dsn_env in config.cluster.secret_keys
    one("kind", "Deployment", "packwise-postgres")
    one("kind", "Service", "packwise-postgres")


def test_eks_has_irsa_s3_pipeline_root_and_sagemaker() -> None:
    config = config_of("eks")
    for name in ("packwise-runner", "packwise-watcher"):
        sa = one("eks", "ServiceAccount", name)
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert config.cluster.pipeline_root and config.cluster.pipeline_root.startswith("s3://")
    launcher = one("eks", "ConfigMap", "kfp-launcher")
    assert launcher["data"]["defaultPipelineRoot"] == config.cluster.pipeline_root
    assert "fromEnv: true" in launcher["data"]["providers"]
    # IRSA: no AWS key material for the tasks; the Secret holds only MLflow's user and the webhook URL
    assert not {k for k in config.cluster.secret_keys if k.startswith("AWS_")}
    assert config.cluster.trigger.endpoint_url is None
    dump = config.model_dump(mode="json")
    assert dump["sagemaker"]["role_arn"].startswith("arn:aws:iam::")
    assert str(config.storage.root).startswith(f"s3://{dump['sagemaker']['bucket']}/")
    assert config.warehouse.backend == "redshift"
    assert one("eks", "ConfigMap", "packwise-env")["data"]["AWS_REGION"] == dump["sagemaker"]["region"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str, tmp_path: Path) -> None:
    validate = TOOLS / "kubernetes-validate"
    if not validate.exists():
        pytest.skip("kubernetes-validate not installed: scripts/check-manifests.sh installs it (CI runs it first)")
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(render(overlay)))
    result = subprocess.run([str(validate), "--strict", "--quiet", str(rendered)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # and it does catch a misspelt field
    broken = render(overlay)[:]
    deployment = next(o for o in broken if o["kind"] == "Deployment")
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([str(validate), "--strict", "--quiet", str(tmp_path / "bad.yaml")], capture_output=True)
    assert result.returncode != 0


def _secret_refs(spec: dict[str, Any]) -> set[str]:
    refs = set()
    for container in spec.get("initContainers", []) + spec["containers"]:
        for env in container.get("env", []):
            if "secretKeyRef" in env.get("valueFrom", {}):
                refs.add(env["valueFrom"]["secretKeyRef"]["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                refs.add(source["secretRef"]["name"])
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            refs.add(volume["secret"]["secretName"])
    return refs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_watcher_has_a_credential_of_its_own_and_only_one_job_sees_minios_root_keys(overlay: str) -> None:
    watcher = one(overlay, "Deployment", "packwise-watcher")["spec"]["template"]["spec"]
    assert _secret_refs(watcher) == {"packwise-watcher-s3"}
    for name, spec in pod_specs(overlay):
        if MINIO_ROOT_SECRET in _secret_refs(spec):
            assert name == "Job/packwise-minio-users", f"{overlay} {name} reads MinIO's root Secret"


def test_kinds_minio_users_are_limited_to_what_each_needs() -> None:
    import json

    config = config_of("kind")
    trigger = config.cluster.trigger
    policies = one("kind", "ConfigMap", "packwise-minio-policies")["data"]
    watcher = json.loads(policies["watcher-policy.json"])
    objects_rule = next(s for s in watcher["Statement"] if "s3:GetObject" in s["Action"])
    # the watcher reads, claims and moves trigger files under the prefix, nothing else of the bucket
    assert objects_rule["Resource"] == [f"arn:aws:s3:::{trigger.bucket}/{trigger.prefix.rstrip('/')}/*"]
    listing = next(s for s in watcher["Statement"] if s["Action"] == ["s3:ListBucket"])
    assert all(p.startswith(trigger.prefix.rstrip("/")) for p in listing["Condition"]["StringLike"]["s3:prefix"])
    assert "Admin" not in json.dumps(watcher) and "s3:*" not in json.dumps(watcher)
    runner = json.loads(policies["runner-policy.json"])
    assert {r for s in runner["Statement"] for r in s["Resource"]} == {
        "arn:aws:s3:::mlpipeline",
        "arn:aws:s3:::mlpipeline/*",
    }
    # the launcher writes artifacts with the one Secret the runner Role may read
    launcher = yaml.safe_load(one("kind", "ConfigMap", "kfp-launcher")["data"]["providers"])
    ref = launcher["minio"]["default"]["credentials"]["secretRef"]["secretName"]
    role = one("kind", "Role", "packwise-runner")
    readable = {n for rule in role["rules"] if "secrets" in rule["resources"] for n in rule["resourceNames"]}
    assert readable == {ref} == {"packwise-runner-s3"}
    job = one("kind", "Job", "packwise-minio-users")["spec"]["template"]["spec"]
    assert {"packwise-minio-users", MINIO_ROOT_SECRET} == _secret_refs(job)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mlflow_requires_basic_auth_and_admits_only_packwise_tasks(overlay: str) -> None:
    import configparser

    deployment = one(overlay, "Deployment", "mlflow")["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    assert "--app-name=basic-auth" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "mlflow-auth" and not ref.get("optional"), name  # no Secret, no server
    ini = configparser.ConfigParser()
    ini.read_string(one(overlay, "ConfigMap", "mlflow-auth")["data"]["basic_auth.ini"])
    assert ini["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert ini["mlflow"]["database_uri"].startswith("sqlite:////mlflow/")  # the persistent volume
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth")
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == f"{mount['mountPath']}/basic_auth.ini"
    policy = one(overlay, "NetworkPolicy", "mlflow")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mlflow"}
    assert policy["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "packwise"}},
                }
            ],
            "ports": [{"port": 5000}],
        }
    ]
    # the registry tasks log in with the user the server was given (packwise-credentials)
    cluster = config_of(overlay).cluster
    assert cluster.secret == "packwise-credentials"
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(cluster.secret_keys)


def test_task_pods_get_argos_securitycontext_and_log_archive_with_the_runners_user() -> None:
    patch = yaml.safe_load((ROOT / "manifests" / "cluster-admin" / "workflow-controller-patch.yaml").read_text())
    main = yaml.safe_load(patch["data"]["mainContainer"])["securityContext"]
    assert main["runAsNonRoot"] is True and main["runAsUser"] == 1000  # the images' packwise user
    assert main["allowPrivilegeEscalation"] is False
    assert main["capabilities"] == {"drop": ["ALL"]} and main["seccompProfile"] == {"type": "RuntimeDefault"}
    executor = yaml.safe_load(patch["data"]["executor"])["securityContext"]
    assert executor["runAsNonRoot"] is True and executor["allowPrivilegeEscalation"] is False
    s3 = yaml.safe_load(patch["data"]["artifactRepository"])["s3"]
    assert s3["accessKeySecret"]["name"] == s3["secretKeySecret"]["name"] == "packwise-runner-s3"
    kind_up = (ROOT / "scripts" / "kind-up.sh").read_text()
    assert "--patch-file manifests/cluster-admin/workflow-controller-patch.yaml" in kind_up
    assert "pin-base-image.sh" in kind_up  # the cluster build's base image by digest
