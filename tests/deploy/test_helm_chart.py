"""The Helm chart (deploy/helm/liveact), rendered offline with the real Helm engine.

helm-python-sdk renders and lints (Helm's Go SDK through ctypes: no cluster, no network);
kubernetes-validate checks every rendered manifest against the Kubernetes OpenAPI schemas in
strict mode (an unknown field is an error). Value sets: the defaults, the H200 / TP 2 example,
an external Redis with TLS, the HPA (plus Ingress, GRPCRoute, restricted clients, a weights PVC),
GPU-less encoder / decoder, full telemetry (OTLP export, restricted scrapers, a registry) and metrics
off. Bad values must fail rendering with a message that says what to fix.
"""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import Chart, HelmRenderError, HelmValuesError, lint

from liveact.config import get_preset, preset_names

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / "deploy" / "helm"
CHART = HELM / "liveact"
KUBE_VERSION = "1.33.0"  # the manifests are validated against this version ...
MIN_KUBE_VERSION = re.fullmatch(  # ... and against the oldest one Chart.yaml's kubeVersion allows
    r">=(\d+\.\d+\.\d+)-0", yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
)[1]
RELEASE, NAMESPACE = "lv", "media"
GPU = "nvidia.com/gpu"
# kinds kubernetes-validate has no schema for (Gateway API CRDs): checked field by field below
CRD_KINDS = {("gateway.networking.k8s.io/v1", "GRPCRoute")}
HEALTH_NAMES = {
    "generator": "liveact.v1.Generator",
    "audio-encoder": "liveact.v1.AudioEncoder",
    "decoder": "liveact.v1.Decoder",
}
SETTINGS_FILES = {  # component -> the settings dataclass its LIVEACT_* variables must name
    "generator": ("services/generator/settings.py", "GeneratorSettings"),
    "audio-encoder": ("services/audio_encoder/settings.py", "EncoderSettings"),
    "decoder": ("services/decoder/settings.py", "DecoderSettings"),
}
# subtrees of values.yaml that are Kubernetes objects passed through: their keys need no `# --`
PASSTHROUGH = {
    "podSecurityContext", "securityContext", "resources", "strategy", "behavior", "tolerations",
    "topologySpreadConstraints", "annotations", "nodeSelector", "affinity", "podAnnotations", "podLabels",
}  # fmt: skip

EXTERNAL_TLS = {
    "redis": {
        "bundled": {"enabled": False},
        "keyPrefix": "lv-prod",
        "external": {
            "url": "rediss://redis.cache.svc:6380/0",
            "auth": {"username": "liveact", "existingSecret": "redis-auth", "passwordKey": "password"},
            "tls": {"enabled": True, "existingSecret": "redis-ca", "caKey": "ca.crt", "clientCert": True},
        },
    }
}
HPA_AND_EXPOSURE = {
    "generator": {
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "metricName": "active_sessions"}
    },
    "ingress": {"enabled": True, "hosts": ["avatar.example.com"], "tls": [{"secretName": "tls", "hosts": ["x"]}]},
    "gateway": {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gw"}], "hostnames": ["a.example"]},
    "networkPolicy": {"clients": [{"namespaceSelector": {"matchLabels": {"team": "agents"}}}]},
    "model": {"weights": {"source": "pvc"}},
}
GPU_LESS_PEERS = {"audioEncoder": {"gpu": {"enabled": False}}, "decoder": {"gpu": {"enabled": False}}}
OTLP = "http://otel-collector.observability.svc:4317"
SCRAPERS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
TELEMETRY = {
    "telemetry": {"otlpEndpoint": OTLP, "traceRatio": 0.25, "metrics": {"allowFrom": SCRAPERS}},
    "image": {"registry": "registry.example.com/liveact/", "tag": "1.2.3"},
}
NO_METRICS = {"telemetry": {"metrics": {"enabled": False}}}
IMAGES = {  # component -> (image repository, module): services/<module>/Dockerfile (tests/deploy/test_images.py)
    "generator": ("liveact-generator", "generator"),
    "audio-encoder": ("liveact-audio-encoder", "audio_encoder"),
    "decoder": ("liveact-decoder", "decoder"),
}


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((HELM / "examples" / name).read_text())


VALUE_SETS = {
    "default": {},
    "h200-tp2": example("h200-tp2.yaml"),
    "h100-tp2": example("h100-tp2.yaml"),
    "external-redis-tls": EXTERNAL_TLS,
    "hpa": HPA_AND_EXPOSURE,
    "gpu-less-peers": GPU_LESS_PEERS,
    "telemetry": TELEMETRY,
    "no-metrics": NO_METRICS,
}


@pytest.fixture(scope="module")
def chart():
    with Chart.load(CHART) as loaded:
        yield loaded


@functools.cache
def _render(values_json: str) -> tuple[tuple[dict, ...], str]:
    with Chart.load(CHART) as loaded:
        files = loaded.render(json.loads(values_json), name=RELEASE, namespace=NAMESPACE)
    docs = tuple(
        doc for path, text in sorted(files.items()) if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc
    )
    return docs, files.get(f"{CHART.name}/templates/NOTES.txt", "")


def render(values: dict) -> list[dict]:
    """Every manifest (the helm test pod included) as a fresh dict."""
    return copy.deepcopy(list(_render(json.dumps(values, sort_keys=True))[0]))


def find(docs: list[dict], kind: str, component: str) -> dict:
    hits = [
        d for d in docs if d["kind"] == kind and d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(hits) == 1, f"{len(hits)} {kind}s for {component}"
    return hits[0]


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env(c: dict) -> dict[str, Any]:
    """name -> value, or the valueFrom dict."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ---------------------------------------------------------------- render, lint, validate


@pytest.mark.parametrize("kube_version", [MIN_KUBE_VERSION, KUBE_VERSION])
@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_manifest_is_valid_kubernetes(name, kube_version):
    docs = render(VALUE_SETS[name])
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} on {kube_version}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount", "Pod"} <= kinds
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "two manifests with the same kind and name"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_is_clean(name):
    report = lint(CHART, VALUE_SETS[name], strict=True, kube_version=f"v{KUBE_VERSION}", namespace=NAMESPACE)
    serious = [m for m in report["messages"] if m["severity"] >= 2]  # 2 = warning, 3 = error
    assert not serious and not report["errors"], serious or report["errors"]


# ---------------------------------------------------------------- GPUs, scheduling


@pytest.mark.parametrize(("name", "tp", "products"), [
    ("default", 1, ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-NVL", "NVIDIA-H200", "NVIDIA-H200-NVL"]),
    ("h200-tp2", 2, ["NVIDIA-H200"]),
    ("h100-tp2", 2, ["NVIDIA-H100-80GB-HBM3"]),
])  # fmt: skip
def test_generator_requests_one_gpu_per_tensor_parallel_rank(name, tp, products):
    gen = find(render(VALUE_SETS[name]), "Deployment", "generator")
    pod = gen["spec"]["template"]["spec"]
    c = container(gen)
    assert c["resources"]["limits"][GPU] == tp
    assert c["resources"]["requests"][GPU] == tp
    assert env(c)["LIVEACT_TP"] == str(tp)
    assert env(c)["LIVEACT_DEVICE"] == "cuda"
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.product", "operator": "In", "values": products}]
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    if name != "default":
        assert pod["runtimeClassName"] == "nvidia"
        generator = VALUE_SETS[name]["generator"]  # what the memory plan is checked for at start
        assert env(c)["LIVEACT_MAX_SESSIONS"] == str(generator["maxSessions"])
        assert env(c)["LIVEACT_MAX_SIZE"] == generator["maxSize"]
        assert env(c)["LIVEACT_KV_CACHE"] == generator["kvCache"]


def test_gpu_less_encoder_and_decoder_run_on_cpu():
    docs = render(GPU_LESS_PEERS)
    for component in ("audio-encoder", "decoder"):
        dep = find(docs, "Deployment", component)
        c = container(dep)
        for part in ("limits", "requests"):
            assert GPU not in c["resources"].get(part, {})
        assert env(c)["LIVEACT_DEVICE"] == "cpu"
        assert "affinity" not in dep["spec"]["template"]["spec"]
    # by default the decoder has a GPU (the Wan VAE needs one for real time), the encoder not
    default = render({})
    assert container(find(default, "Deployment", "decoder"))["resources"]["limits"][GPU] == 1
    assert GPU not in container(find(default, "Deployment", "audio-encoder"))["resources"]["limits"]


def test_encoder_and_decoder_scale_independently():
    docs = render({"audioEncoder": {"replicas": 3}, "decoder": {"replicas": 5}, "generator": {"replicas": 4}})
    replicas = {c: find(docs, "Deployment", c)["spec"]["replicas"] for c in HEALTH_NAMES}
    assert replicas == {"generator": 4, "audio-encoder": 3, "decoder": 5}


# ---------------------------------------------------------------- probes and drain


@pytest.mark.parametrize("name", VALUE_SETS)
def test_grpc_probes_point_at_the_grpc_port(name):
    docs = render(VALUE_SETS[name])
    for component, health in HEALTH_NAMES.items():
        c = container(find(docs, "Deployment", component))
        (port,) = [p["containerPort"] for p in c["ports"] if p["name"] == "grpc"]
        assert env(c)["LIVEACT_PORT"] == str(port)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"]["port"] == port, (component, probe)
        assert c["readinessProbe"]["grpc"]["service"] == health
        assert c["livenessProbe"]["grpc"]["service"] == ""
    gen = container(find(docs, "Deployment", "generator"))
    startup = gen["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60  # weight loading + warm-up


@pytest.mark.parametrize("name", VALUE_SETS)
def test_termination_grace_period_exceeds_prestop_plus_drain(name):
    docs = render(VALUE_SETS[name])
    for component in HEALTH_NAMES:
        pod = find(docs, "Deployment", component)["spec"]["template"]["spec"]
        c = container(find(docs, "Deployment", component))
        drain = float(env(c)["LIVEACT_GRACE_S"])
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert drain > 0 and pre_stop > 0
        assert pod["terminationGracePeriodSeconds"] > pre_stop + drain, component


# ---------------------------------------------------------------- wiring between services


@pytest.mark.parametrize("name", VALUE_SETS)
def test_generator_dials_the_rendered_encoder_and_decoder_services(name):
    docs = render(VALUE_SETS[name])
    gen_env = env(container(find(docs, "Deployment", "generator")))
    for component, variable in (("audio-encoder", "LIVEACT_AUDIO_ENCODER"), ("decoder", "LIVEACT_DECODER")):
        service = find(docs, "Service", component)
        dep = find(docs, "Deployment", component)
        (port,) = service["spec"]["ports"]
        assert gen_env[variable] == f"{service['metadata']['name']}.{NAMESPACE}.svc:{port['port']}"
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        named = {p["name"]: p["containerPort"] for p in container(dep)["ports"]}
        assert named[port["targetPort"]] == port["port"]
        assert env(container(dep))["LIVEACT_HOST"] == "0.0.0.0"  # the services default to loopback


def test_default_generator_uses_the_bundled_redis_with_its_secret():
    docs = render({})
    gen_env = env(container(find(docs, "Deployment", "generator")))
    service = find(docs, "Service", "redis")
    secret = find(docs, "Secret", "redis")
    find(docs, "StatefulSet", "redis")
    (port,) = service["spec"]["ports"]
    assert gen_env["LIVEACT_REDIS_URL"] == f"redis://{service['metadata']['name']}.{NAMESPACE}.svc:{port['port']}/0"
    ref = gen_env["LIVEACT_REDIS_PASSWORD"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["data"]
    assert "LIVEACT_REDIS_TLS" not in gen_env


def test_external_redis_cluster_turns_on_the_cluster_client():
    external = {"url": "redis://r-0.r:6379", "cluster": True}
    docs = render({"redis": {"bundled": {"enabled": False}, "external": external}})
    e = env(container(find(docs, "Deployment", "generator")))
    assert (e["LIVEACT_REDIS_URL"], e["LIVEACT_REDIS_CLUSTER"]) == ("redis://r-0.r:6379", "true")
    assert "LIVEACT_REDIS_CLUSTER" not in env(container(find(render(EXTERNAL_TLS), "Deployment", "generator")))


def test_external_redis_with_tls_comes_from_secrets():
    docs = render(EXTERNAL_TLS)
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "redis"]
    gen = find(docs, "Deployment", "generator")
    c = container(gen)
    e = env(c)
    assert e["LIVEACT_REDIS_URL"] == "rediss://redis.cache.svc:6380/0"
    assert e["LIVEACT_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "redis-auth", "key": "password"}}
    assert e["LIVEACT_REDIS_USERNAME"] == "liveact"
    assert e["LIVEACT_REDIS_TLS"] == "true"
    assert e["LIVEACT_REDIS_KEY_PREFIX"] == "lv-prod"
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "redis-tls"]
    (volume,) = [v for v in gen["spec"]["template"]["spec"]["volumes"] if v["name"] == "redis-tls"]
    assert volume["secret"]["secretName"] == "redis-ca" and mount["readOnly"]
    assert e["LIVEACT_REDIS_TLS_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
    assert e["LIVEACT_REDIS_TLS_CERT_FILE"] == f"{mount['mountPath']}/tls.crt"
    assert e["LIVEACT_REDIS_TLS_KEY_FILE"] == f"{mount['mountPath']}/tls.key"
    # a password given in the values goes into a Secret of the chart, never into a flag or plain env
    docs = render(deep_merge(EXTERNAL_TLS, {"redis": {"external": {"auth": {"existingSecret": "", "password": "pw"}}}}))
    secret = find(docs, "Secret", "redis")
    ref = env(container(find(docs, "Deployment", "generator")))["LIVEACT_REDIS_PASSWORD"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "password"}


def test_weights_volume_and_directories():
    docs = render(VALUE_SETS["h200-tp2"])
    for component, variable, expected in (
        ("generator", "LIVEACT_MODEL_DIR", "/models/liveact-18b"),
        ("audio-encoder", "LIVEACT_WEIGHTS_DIR", "/models/liveact-18b"),  # finds wav2vec2/ or chinese-wav2vec2-base/
        ("decoder", "LIVEACT_WEIGHTS_DIR", "/models/liveact-18b"),  # finds vae/ or Wan2.1_VAE.pth
    ):
        dep = find(docs, "Deployment", component)
        assert env(container(dep))[variable] == expected
        (volume,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "weights"]
        assert volume["persistentVolumeClaim"] == {"claimName": "liveact-weights", "readOnly": True}
    assert env(container(find(docs, "Deployment", "decoder")))["LIVEACT_VAE_PRESET"] == "wan2.1"
    # source pvc: the chart creates the claim and keeps it on uninstall
    docs = render(HPA_AND_EXPOSURE)
    pvc = find(docs, "PersistentVolumeClaim", "weights")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = find(docs, "Deployment", "generator")["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "weights",
        "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"], "readOnly": True},
    } in volumes
    docs = render({"model": {"weights": {"source": "hostPath", "hostPath": {"path": "/nvme/liveact"}}}})
    volumes = find(docs, "Deployment", "generator")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "weights", "hostPath": {"path": "/nvme/liveact", "type": "Directory"}} in volumes


@pytest.mark.parametrize("component", SETTINGS_FILES)
def test_every_liveact_variable_names_a_real_flag(component):
    """LIVEACT_X_Y is read only if the service's settings have a field x_y (services/common/settings.py)."""
    fields = settings_fields(*SETTINGS_FILES[component])
    for name in VALUE_SETS:
        c = container(find(render(VALUE_SETS[name]), "Deployment", component))
        wanted = {e["name"].removeprefix("LIVEACT_").lower() for e in c["env"] if e["name"].startswith("LIVEACT_")}
        unknown = wanted - fields
        assert not unknown, f"{component} ({name}): no flag for {sorted(unknown)}"


def settings_fields(path: str, class_name: str) -> set[str]:
    """Dataclass fields of ``class_name`` and ServerSettings, read from the source (no torch import)."""
    fields: set[str] = set()
    for source, name in ((path, class_name), ("services/common/settings.py", "ServerSettings")):
        tree = ast.parse((ROOT / source).read_text())
        (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name]
        fields |= {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return fields


# ---------------------------------------------------------------- exposure, autoscaling, policies


def test_hpa_on_active_sessions_replaces_fixed_replicas():
    docs = render(HPA_AND_EXPOSURE)
    gen = find(docs, "Deployment", "generator")
    assert "replicas" not in gen["spec"]
    hpa = find(docs, "HorizontalPodAutoscaler", "generator")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": gen["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "active_sessions"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert not [d for d in render({}) if d["kind"] == "HorizontalPodAutoscaler"]


def test_ingress_and_grpcroute_route_to_the_generator_service():
    docs = render(HPA_AND_EXPOSURE)
    service = find(docs, "Service", "generator")
    ingress = find(docs, "Ingress", "generator")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "grpc"}}
    route = find(docs, "GRPCRoute", "generator")
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gw"}]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"method": {"service": "liveact.v1.Generator"}}]
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}]


def test_network_policies_admit_only_the_generator_to_its_peers():
    docs = render(HPA_AND_EXPOSURE)
    gen_labels = find(docs, "Deployment", "generator")["spec"]["template"]["metadata"]["labels"]
    test_labels = find(docs, "Pod", "test")["metadata"]["labels"]
    for component in ("audio-encoder", "decoder"):
        policy = find(docs, "NetworkPolicy", component)
        dep = find(docs, "Deployment", component)
        assert (
            policy["spec"]["podSelector"]["matchLabels"].items()
            <= dep["spec"]["template"]["metadata"]["labels"].items()
        )
        grpc_port = container(dep)["ports"][0]["containerPort"]
        (rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == grpc_port]
        selectors = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
        assert len(selectors) == 2  # the generator and the helm test pod, nobody else
        assert selectors[0].items() <= gen_labels.items() and selectors[1].items() <= test_labels.items()
        assert rule["ports"] == [{"port": grpc_port, "protocol": "TCP"}]
    (rule,) = [r for r in find(docs, "NetworkPolicy", "generator")["spec"]["ingress"] if r["ports"][0]["port"] == 50051]
    assert {"namespaceSelector": {"matchLabels": {"team": "agents"}}} in rule["from"]
    # bundled Redis: only generators may connect
    (rule,) = find(render({}), "NetworkPolicy", "redis")["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"].items() <= gen_labels.items()


def test_pod_disruption_budgets_and_service_account():
    docs = render({})
    for component in HEALTH_NAMES:
        pdb = find(docs, "PodDisruptionBudget", component)
        assert pdb["spec"]["maxUnavailable"] == 1
        labels = find(docs, "Deployment", component)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    for component in HEALTH_NAMES:
        pod = find(docs, "Deployment", component)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False


def test_helm_test_pod_checks_grpc_health_of_every_service():
    docs = render({})
    pod = find(docs, "Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    checks = {c["name"]: c["args"] for c in pod["spec"]["containers"]}
    assert set(checks) == set(HEALTH_NAMES)
    for component, health in HEALTH_NAMES.items():
        service = find(docs, "Service", component)
        address = f"{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}"
        assert f"-addr={address}" in checks[component] and f"-service={health}" in checks[component]


def test_notes_tell_how_to_connect():
    docs, notes = _render(json.dumps({}))
    service = find(list(docs), "Service", "generator")["metadata"]["name"]
    assert f"port-forward service/{service} 50051:50051" in notes
    assert "liveact client --target 127.0.0.1:50051" in notes
    assert f"{service}.{NAMESPACE}.svc:50051" in notes
    assert ":9464/metrics on every LiveAct pod" in notes and "OTLP" not in notes
    assert f"OTLP collector {OTLP}" in _render(json.dumps(TELEMETRY, sort_keys=True))[1]
    assert "/metrics" not in _render(json.dumps(NO_METRICS, sort_keys=True))[1]


# ---------------------------------------------------------------- images and telemetry


def test_each_component_runs_its_own_image():
    for component, (repository, module) in IMAGES.items():
        c = container(find(render({}), "Deployment", component))
        assert c["image"] == f"{repository}:0.1.0"  # the chart's appVersion
        assert c["imagePullPolicy"] == "IfNotPresent"
        assert c["command"] == ["python", "-m", f"services.{module}"]
        c = container(find(render(TELEMETRY), "Deployment", component))
        assert c["image"] == f"registry.example.com/liveact/{repository}:1.2.3"
    # a component's own fields win; an empty registry uses the repository as it is (any registry)
    values = {"decoder": {"image": {"repository": "ghcr.io/me/liveact-decoder-cuda", "tag": "1.2.3-cu130",
                                    "pullPolicy": "Always"}}}  # fmt: skip
    docs = render(values)
    decoder = container(find(docs, "Deployment", "decoder"))
    assert (decoder["image"], decoder["imagePullPolicy"]) == ("ghcr.io/me/liveact-decoder-cuda:1.2.3-cu130", "Always")
    assert container(find(docs, "Deployment", "generator"))["image"] == "liveact-generator:0.1.0"


def test_telemetry_values_become_the_services_flags():
    docs = render(TELEMETRY)
    for component in HEALTH_NAMES:
        e = env(container(find(docs, "Deployment", component)))
        assert e["LIVEACT_OTEL_ENDPOINT"] == OTLP
        assert e["LIVEACT_OTEL_EXPORT_S"] == "15"
        assert e["LIVEACT_METRICS_PORT"] == "9464"
        # the generator samples traces; the encoder and decoder follow its decision
        assert ("LIVEACT_TRACE_RATIO" in e) == (component == "generator"), component
        fields = settings_fields(*SETTINGS_FILES[component])
        assert {"otel_endpoint", "otel_export_s", "metrics_port"} <= fields
    assert env(container(find(docs, "Deployment", "generator")))["LIVEACT_TRACE_RATIO"] == "0.25"
    assert "trace_ratio" in settings_fields(*SETTINGS_FILES["generator"])
    # defaults: no export, Prometheus on
    for component in HEALTH_NAMES:
        e = env(container(find(render({}), "Deployment", component)))
        assert not {"LIVEACT_OTEL_ENDPOINT", "LIVEACT_OTEL_EXPORT_S", "LIVEACT_TRACE_RATIO"} & e.keys()
        assert e["LIVEACT_METRICS_PORT"] == "9464"


@pytest.mark.parametrize("name", ["default", "telemetry"])
def test_otel_resource_attributes_come_from_the_downward_api(name):
    docs = render(VALUE_SETS[name])
    for component in HEALTH_NAMES:
        dep = find(docs, "Deployment", component)
        variables = container(dep)["env"]
        names = [v["name"] for v in variables]
        e = env(container(dep))
        attributes = dict(kv.split("=", 1) for kv in e["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        assert attributes["service.namespace"] == NAMESPACE
        assert attributes["k8s.deployment.name"] == dep["metadata"]["name"]
        for key, variable, field in (
            ("k8s.pod.name", "POD_NAME", "metadata.name"),
            ("k8s.namespace.name", "POD_NAMESPACE", "metadata.namespace"),
            ("k8s.node.name", "NODE_NAME", "spec.nodeName"),
        ):
            assert attributes[key] == f"$({variable})"
            assert e[variable] == {"fieldRef": {"fieldPath": field}}
            # $(VAR) expands only variables defined earlier in the list
            assert names.index(variable) < names.index("OTEL_RESOURCE_ATTRIBUTES")


def test_metrics_port_annotations_and_policy_when_enabled():
    docs = render({"decoder": {"podAnnotations": {"team": "media", "prometheus.io/path": "/custom"}}})
    for component in HEALTH_NAMES:
        dep = find(docs, "Deployment", component)
        c = container(dep)
        ports = {p["name"]: p for p in c["ports"]}
        assert ports["metrics"] == {"name": "metrics", "containerPort": 9464, "protocol": "TCP"}
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(ports["metrics"]["containerPort"])
        assert annotations["prometheus.io/path"] == ("/custom" if component == "decoder" else "/metrics")
        # anyone may scrape by default (allowFrom empty): a rule with the port and no `from`
        rules = find(docs, "NetworkPolicy", component)["spec"]["ingress"]
        assert {"ports": [{"port": 9464, "protocol": "TCP"}]} in rules
    assert find(docs, "Deployment", "decoder")["spec"]["template"]["metadata"]["annotations"]["team"] == "media"
    # allowFrom restricts the scrapers; the gRPC rules stay as they were
    docs = render(TELEMETRY)
    for component in HEALTH_NAMES:
        rules = find(docs, "NetworkPolicy", component)["spec"]["ingress"]
        assert {"from": SCRAPERS, "ports": [{"port": 9464, "protocol": "TCP"}]} in rules
        assert len(rules) == 2


def test_no_metrics_port_annotations_or_policy_when_disabled():
    docs = render(deep_merge(NO_METRICS, {"generator": {"podAnnotations": {"team": "media"}}}))
    for component in HEALTH_NAMES:
        dep = find(docs, "Deployment", component)
        c = container(dep)
        assert [p["name"] for p in c["ports"]] == ["grpc"]
        annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
        assert not [a for a in annotations if a.startswith("prometheus.io/")]
        assert not {"LIVEACT_METRICS_PORT", "LIVEACT_OTEL_ENDPOINT", "OTEL_RESOURCE_ATTRIBUTES"} & env(c).keys()
        (rule,) = find(docs, "NetworkPolicy", component)["spec"]["ingress"]
        assert [p["port"] for p in rule["ports"]] == [c["ports"][0]["containerPort"]]
    assert find(docs, "Deployment", "generator")["spec"]["template"]["metadata"]["annotations"] == {"team": "media"}


# ---------------------------------------------------------------- bad values


BAD_VALUES = [
    ({"generator": {"tensorParallel": 0}}, HelmValuesError, ["/generator/tensorParallel", "minimum: got 0, want 1"]),
    (
        {"model": {"preset": "liveact-18b", "weights": {"source": "hostPath", "hostPath": {"path": "/w"}}},
         "generator": {"tensorParallel": 3}},
        HelmRenderError,
        ["generator.tensorParallel 3 must divide the 40 attention heads of preset liveact-18b"],
    ),
    (
        {"generator": {"terminationGracePeriodSeconds": 60}},
        HelmRenderError,
        ["generator.terminationGracePeriodSeconds 60 must be longer than generator.drain.preStopSleepSeconds + "
         "generator.drain.graceSeconds = 70"],
    ),
    (
        {"decoder": {"drain": {"graceSeconds": 100}}},
        HelmRenderError,
        ["decoder.terminationGracePeriodSeconds 90 must be longer than", "= 110"],
    ),
    (
        {"redis": {"external": {"url": "redis://r:6379/0"}}},
        HelmRenderError,
        ["both redis.bundled.enabled and redis.external", "configure exactly one"],
    ),
    ({"redis": {"bundled": {"enabled": False}}}, HelmRenderError, ["neither redis.bundled.enabled nor", "exactly one"]),
    (
        {"redis": {"bundled": {"enabled": False}, "external": {"url": "http://r:6379"}}},
        HelmRenderError,
        ['redis.external.url "http://r:6379" must be redis://host:port[/db] or rediss://'],
    ),
    (
        {"redis": {"bundled": {"enabled": False}, "external": {"url": "redis://r:6379/3", "cluster": True}}},
        HelmRenderError,
        ['redis.external.url "redis://r:6379/3": Redis Cluster has only database 0'],
    ),
    (
        {"redis": {"bundled": {"enabled": False}, "external": {"url": "rediss://r", "tls": {"clientCert": True}}}},
        HelmRenderError,
        ["redis.external.tls.clientCert needs redis.external.tls.existingSecret"],
    ),
    (
        {"model": {"preset": "liveact-18b"}},
        HelmRenderError,
        ["model.preset liveact-18b loads its weights from a local directory: set model.weights.source"],
    ),
    (
        {"redis": {"bundled": {"maxmemory": "20mb"}}},
        HelmRenderError,
        ["redis.bundled.maxmemory 20mb (0.0 GiB) cannot hold 8 sessions (generator.maxSessions 4 x 2 generator pods)",
         "of tiny at 64x64, kvCache auto: each needs up to 0.00 GiB", "raise redis.bundled.maxmemory"],
    ),
    (
        {"model": {"preset": "liveact-18b", "weights": {"source": "hostPath", "hostPath": {"path": "/w"}}},
         "generator": {"autoscaling": {"enabled": True, "maxReplicas": 3}},
         "telemetry": {"metrics": {"enabled": True}}},
        HelmRenderError,
        ["redis.bundled.maxmemory 2gb (2.0 GiB) cannot hold 12 sessions (generator.maxSessions 4 x 3 generator pods) "
         "of liveact-18b at 416x720, kvCache auto: each needs up to 37.53 GiB", "450.3 GiB in all"],
    ),
    (
        {"generator": {"maxSize": "96x96"}},
        HelmRenderError,
        ["no Redis figure for preset tiny at 96x96 with kvCache auto (known: fp8/64x64, model/64x64)"],
    ),
    ({"generator": {"replicas": "two"}}, HelmValuesError, ["/generator/replicas", "got string, want integer"]),
    ({"generator": {"tensorParalel": 2}}, HelmValuesError, ["/generator", "tensorParalel"]),
    ({"model": {"preset": "huge"}}, HelmValuesError, ["/model/preset", "tiny", "liveact-18b"]),
    (
        {"generator": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
        HelmRenderError,
        ["generator.autoscaling.minReplicas 5 must not exceed maxReplicas 2"],
    ),
    ({"gateway": {"enabled": True}}, HelmRenderError, ["gateway.enabled: set gateway.parentRefs"]),
    (
        {"generator": {"autoscaling": {"enabled": True}}, "telemetry": {"metrics": {"enabled": False}}},
        HelmRenderError,
        ["generator.autoscaling.enabled needs telemetry.metrics.enabled=true: the HPA scales on "
         "liveact_generator_active_sessions, which the generator exports at /metrics"],
    ),
    (
        {"telemetry": {"metrics": {"port": 50053}}},
        HelmRenderError,
        ["telemetry.metrics.port 50053 is also decoder.port: use another port for /metrics"],
    ),
    ({"telemetry": {"otlpEndpoint": "otel:4317"}}, HelmValuesError, ["/telemetry/otlpEndpoint", "does not match"]),
    ({"telemetry": {"traceRatio": 2}}, HelmValuesError, ["/telemetry/traceRatio", "maximum"]),
    ({"generator": {"image": {"repository": ""}}}, HelmValuesError, ["/generator/image/repository"]),
]  # fmt: skip


@pytest.mark.parametrize(("values", "error", "texts"), BAD_VALUES)
def test_bad_values_fail_rendering_with_a_message(chart, values, error, texts):
    with pytest.raises(error) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    for text in texts:
        assert text in str(caught.value)


def test_all_value_problems_are_reported_at_once(chart):
    values = {"generator": {"terminationGracePeriodSeconds": 5}, "redis": {"bundled": {"enabled": False}}}
    with pytest.raises(HelmRenderError) as caught:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert "generator.terminationGracePeriodSeconds 5" in str(caught.value) and "neither redis" in str(caught.value)


# ---------------------------------------------------------------- schema and values.yaml


def test_values_schema_accepts_the_defaults_and_rejects_bad_types(chart):
    schema = json.loads((CHART / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert not list(validator.iter_errors(defaults))
    for values in VALUE_SETS.values():
        assert not list(validator.iter_errors(deep_merge(defaults, values)))
    bad = deep_merge(defaults, {"generator": {"tensorParallel": "2"}, "decoder": {"gpu": {"enabled": "yes"}}})
    errors = {"/".join(map(str, e.absolute_path)): e.message for e in validator.iter_errors(bad)}
    assert errors == {
        "generator/tensorParallel": "'2' is not of type 'integer'",
        "decoder/gpu/enabled": "'yes' is not of type 'boolean'",
    }
    with pytest.raises(HelmValuesError, match="want boolean"):
        chart.validate_schema({"decoder": {"gpu": {"enabled": "yes"}}})


def test_committed_schema_is_the_generated_one():
    import importlib.util

    spec = importlib.util.spec_from_file_location("values_schema", HELM / "values_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (CHART / "values.schema.json").read_text() == module.render(), "run python deploy/helm/values_schema.py"
    assert sorted(module.PRESETS) == sorted(preset_names())
    # no schema property that values.yaml lacks (a renamed value would leave a stale one behind);
    # an empty block ({}) may leave its fields out
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict, values: Any, path: str) -> None:
        if values == {}:
            return
        for key, sub in node.get("properties", {}).items():
            assert isinstance(values, dict) and key in values, f"schema has {path}{key}, values.yaml not"
            walk(sub, values[key], f"{path}{key}.")

    walk(module.build(), defaults, "")


def test_every_value_is_documented():
    """Every key of values.yaml has a `# --` comment above it (helm-docs style), except inside
    Kubernetes objects passed through (resources, tolerations, ...)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    undocumented = []
    for n, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside_passthrough = any(k in PASSTHROUGH for _, k in stack)
        stack.append((indent, key))
        if inside_passthrough:
            continue
        above = n - 1
        while above >= 0 and lines[above].strip().startswith("#") and not lines[above].strip().startswith("# --"):
            above -= 1
        if above < 0 or not lines[above].strip().startswith("# --"):
            undocumented.append(".".join(k for _, k in stack))
    assert not undocumented, undocumented


def test_preset_facts_in_the_chart_match_liveact_config():
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    table = re.search(r'define "liveact\.presets" -\}\}\n(.*?)\{\{- end \}\}', helpers, re.S).group(1)
    presets = yaml.safe_load(table)
    assert sorted(presets) == sorted(preset_names())
    for name, facts in presets.items():
        config = get_preset(name)
        size = f"{config.width}x{config.height}"
        assert {k: facts[k] for k in ("heads", "vae", "size")} == {"heads": config.model.num_heads, "vae": config.vae,
                                                                    "size": size}, name  # fmt: skip
        assert f"model/{size}" in facts["redisSessionBytes"]  # the figures: tests/deploy/test_chart_plan.py
