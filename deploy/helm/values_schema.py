"""Builds the LiveAct chart's ``values.schema.json`` (JSON Schema draft-07, which Helm 3 and 4 both read).

Run ``python deploy/helm/values_schema.py`` after changing ``liveact/values.yaml``;
tests/deploy/test_helm_chart.py checks that the committed schema equals ``build()`` and that every schema
property is a key of values.yaml (and the default values pass it, so no key is missing here).

Blocks of our own reject unknown keys, so a typo fails the install instead of being ignored;
Kubernetes objects passed through as they are (resources, affinity, tolerations, ...) are only
checked to be objects or lists. Relations between values (grace periods, exactly one Redis, the
tensor-parallel degree dividing the head count) are checked at render time in
``templates/_validate.tpl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parent / "liveact" / "values.schema.json"
MAX_PORT = 65535
PRESETS = ["tiny", "liveact-18b"]  # liveact.config.preset_names(); the test compares
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
ACCESS_MODES = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]

Schema = dict[str, Any]


def obj(props: Schema, desc: str, strict: bool = True) -> Schema:
    out: Schema = {"type": "object", "description": desc, "properties": props}
    if strict:
        out["additionalProperties"] = False
    return out


def string(desc: str, **rules: Any) -> Schema:
    return {"type": "string", "description": desc, **rules}


def integer(desc: str, minimum: int | None = None, maximum: int | None = None) -> Schema:
    out: Schema = {"type": "integer", "description": desc}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


def boolean(desc: str) -> Schema:
    return {"type": "boolean", "description": desc}


def passthrough(desc: str) -> Schema:
    """A Kubernetes object used as it is."""
    return {"type": "object", "description": desc}


def array(desc: str, item_type: str) -> Schema:
    return {"type": "array", "description": desc, "items": {"type": item_type}}


def string_map(desc: str) -> Schema:
    return {"type": "object", "description": desc, "additionalProperties": {"type": "string"}}


QUANTITY: Schema = {"type": ["string", "integer"], "description": "a Kubernetes quantity, e.g. 16Gi"}


def image(desc: str) -> Schema:
    return obj(
        {
            "repository": string("repository"),
            "tag": {"type": ["string", "number"], "description": "tag"},
            "pullPolicy": string("pull policy", enum=PULL_POLICIES),
        },
        desc,
    )


def shared_image() -> Schema:
    """What the three LiveAct images share (each component names its own repository)."""
    return obj(
        {
            "registry": string("registry and path prefixed to the component repositories (empty: none)"),
            "tag": {"type": ["string", "number"], "description": "tag of the three images (empty: appVersion)"},
            "pullPolicy": string("pull policy", enum=PULL_POLICIES),
        },
        "LiveAct images",
    )


def component_image() -> Schema:
    return obj(
        {
            "repository": string("repository under image.registry", minLength=1),
            "tag": {"type": ["string", "number"], "description": "tag (empty: image.tag)"},
            "pullPolicy": string("pull policy (empty: image.pullPolicy)", enum=["", *PULL_POLICIES]),
        },
        "the component's image",
    )


def telemetry() -> Schema:
    return obj(
        {
            "otlpEndpoint": string("--otel-endpoint: OTLP/gRPC collector URL (empty: off)", pattern="^(https?://.+)?$"),
            "exportIntervalSeconds": {"type": "number", "exclusiveMinimum": 0, "description": "--otel-export-s"},
            "traceRatio": {"type": "number", "minimum": 0, "maximum": 1, "description": "--trace-ratio (generator)"},
            "metrics": obj(
                {
                    "enabled": boolean("serve Prometheus /metrics"),
                    "port": integer("--metrics-port", 1, MAX_PORT),
                    "allowFrom": array("NetworkPolicyPeers allowed to scrape (empty: anyone)", "object"),
                },
                "Prometheus metrics",
            ),
        },
        "observability",
    )


def probes() -> Schema:
    def probe(desc: str) -> Schema:
        return obj(
            {
                "periodSeconds": integer("seconds between checks", 1),
                "failureThreshold": integer("failed checks before acting", 1),
                "timeoutSeconds": integer("seconds per check", 1),
            },
            desc,
        )

    return obj(
        {"startup": probe("startup probe"), "readiness": probe("readiness probe"), "liveness": probe("liveness probe")},
        "gRPC health probes",
    )


def gpu(with_count: bool) -> Schema:
    props: Schema = {
        "enabled": boolean("request GPUs"),
        "resourceName": string("extended resource name of the device plugin", minLength=1),
        "productLabel": string("node label with the GPU product", minLength=1),
        "products": array("allowed GPU products (empty: any GPU node)", "string"),
    }
    if with_count:
        props["count"] = integer("GPUs per pod", 1)
    return obj(props, "GPUs")


def component() -> Schema:
    """What the generator, the audio encoder and the decoder have in common."""
    return {
        "replicas": integer("pods", 0),
        "port": integer("gRPC port", 1, MAX_PORT),
        "command": array("container command", "string"),
        "extraArgs": array("extra command-line flags", "string"),
        "extraEnv": array("extra environment variables", "object"),
        "image": component_image(),
        "drain": obj(
            {
                "graceSeconds": {"type": "number", "minimum": 0, "description": "--grace-s"},
                "preStopSleepSeconds": integer("preStop sleep before SIGTERM", 0),
            },
            "graceful drain",
        ),
        "terminationGracePeriodSeconds": integer("pod termination grace period", 1),
        "runtimeClassName": string("RuntimeClass"),
        "resources": passthrough("container resources"),
        "probes": probes(),
        "pdb": obj(
            {
                "enabled": boolean("create it"),
                "maxUnavailable": {"type": ["integer", "string"], "description": "a number or a percentage"},
            },
            "PodDisruptionBudget",
        ),
        "nodeSelector": string_map("node selector"),
        "tolerations": array("tolerations", "object"),
        "affinity": passthrough("affinity"),
        "topologySpreadConstraints": array("topology spread constraints", "object"),
        "podAnnotations": string_map("pod annotations"),
        "podLabels": string_map("pod labels"),
    }


def generator() -> Schema:
    props = component()
    props.update(
        {
            "tensorParallel": integer("--tp: tensor-parallel ranks (one GPU each) in one pod", 1),
            "maxSessions": integer("--max-sessions", 1),
            "maxSize": string(
                "--max-size: WIDTHxHEIGHT, multiples of 16 (empty: the preset's default)",
                pattern=r"^$|^[1-9][0-9]*x[1-9][0-9]*$",
            ),
            "kvCache": string("--kv-cache", enum=["auto", "fp8", "model"]),
            "checkpointEveryChunks": integer("--checkpoint-every-chunks", 1),
            "decodeMode": string("--decode-mode", enum=["auto", "stream", "context"]),
            "gpu": gpu(with_count=False),
            "shmSize": QUANTITY,
            "service": obj(
                {
                    "type": string("Service type", enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                    "annotations": string_map("Service annotations"),
                },
                "client-facing Service",
            ),
            "strategy": passthrough("Deployment strategy"),
            "autoscaling": obj(
                {
                    "enabled": boolean("create the HorizontalPodAutoscaler"),
                    "minReplicas": integer("fewest pods", 1),
                    "maxReplicas": integer("most pods", 1),
                    "metricName": string("Pods metric name", minLength=1),
                    "targetAverageValue": {"type": ["string", "integer"], "description": "target per pod (a quantity)"},
                    "behavior": passthrough("HPA scaling behavior"),
                },
                "HorizontalPodAutoscaler",
            ),
        }
    )
    return obj(props, "the generator")


def peer(desc: str) -> Schema:
    props = component()
    props.update({"maxStreams": integer("--max-streams", 1), "gpu": gpu(with_count=True)})
    return obj(props, desc)


def model() -> Schema:
    weights = obj(
        {
            "source": string("where the weights come from", enum=["none", "pvc", "existingClaim", "hostPath"]),
            "mountPath": string("mount path in the pods", pattern="^/"),
            "subPath": string("directory inside the volume"),
            "pvc": obj(
                {
                    "size": QUANTITY,
                    "storageClassName": string("storage class"),
                    "accessModes": {"type": "array", "description": "access modes", "items": {"enum": ACCESS_MODES}},
                },
                "claim created by the chart",
            ),
            "existingClaim": string("existing claim"),
            "hostPath": obj({"path": string("node directory"), "type": string("hostPath type")}, "node directory"),
        },
        "weights volume",
    )
    return obj({"preset": string("model preset", enum=PRESETS), "weights": weights}, "model")


def redis() -> Schema:
    bundled = obj(
        {
            "enabled": boolean("run the bundled single Redis"),
            "image": image("Redis image"),
            "existingSecret": string("Secret with the password"),
            "existingSecretPasswordKey": string("key of the password", minLength=1),
            "maxmemory": string("Redis maxmemory", pattern="^[0-9]+(b|kb|mb|gb)?$"),
            "persistence": obj(
                {"enabled": boolean("use a PersistentVolume"), "size": QUANTITY, "storageClassName": string("class")},
                "persistence",
            ),
            "resources": passthrough("container resources"),
            "nodeSelector": string_map("node selector"),
            "tolerations": array("tolerations", "object"),
        },
        "bundled Redis",
    )
    external = obj(
        {
            "url": string("redis:// or rediss:// URL"),
            "existingSecret": string("Secret with the URL"),
            "existingSecretUrlKey": string("key of the URL", minLength=1),
            "cluster": boolean("Redis Cluster: url names one node (database 0); the generator discovers the shards"),
            "auth": obj(
                {
                    "username": string("ACL user"),
                    "existingSecret": string("Secret with the password"),
                    "passwordKey": string("key of the password", minLength=1),
                    "password": string("password (prefer existingSecret)"),
                },
                "credentials",
            ),
            "tls": obj(
                {
                    "enabled": boolean("TLS"),
                    "existingSecret": string("Secret with the CA bundle (and tls.crt / tls.key)"),
                    "caKey": string("key of the CA bundle"),
                    "clientCert": boolean("mutual TLS"),
                },
                "TLS",
            ),
        },
        "external Redis",
    )
    return obj(
        {
            "keyPrefix": string("--redis-key-prefix", pattern="^[A-Za-z0-9_.-]{1,64}$"),
            "bundled": bundled,
            "external": external,
        },
        "session checkpoints",
    )


def build() -> Schema:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "LiveAct chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "nameOverride": string("chart name override"),
            "fullnameOverride": string("resource name prefix override"),
            "image": shared_image(),
            "imagePullSecrets": array("image pull secrets", "object"),
            "model": model(),
            "serviceAccount": obj(
                {
                    "create": boolean("create it"),
                    "name": string("name"),
                    "annotations": string_map("annotations"),
                    "automount": boolean("mount an API token"),
                },
                "ServiceAccount",
            ),
            "podSecurityContext": passthrough("pod security context"),
            "securityContext": passthrough("container security context"),
            "logLevel": string("log level", enum=["DEBUG", "INFO", "WARNING", "ERROR"]),
            "reflection": boolean("gRPC server reflection"),
            "listenHost": string("bind address in the pods", minLength=1),
            "telemetry": telemetry(),
            "generator": generator(),
            "audioEncoder": peer("the audio encoder"),
            "decoder": peer("the decoder"),
            "redis": redis(),
            "ingress": obj(
                {
                    "enabled": boolean("create it"),
                    "className": string("IngressClass"),
                    "annotations": string_map("annotations"),
                    "hosts": array("host names", "string"),
                    "tls": array("TLS entries", "object"),
                },
                "Ingress",
            ),
            "gateway": obj(
                {
                    "enabled": boolean("create it"),
                    "parentRefs": array("Gateways to attach to", "object"),
                    "hostnames": array("host names", "string"),
                },
                "Gateway API GRPCRoute",
            ),
            "networkPolicy": obj(
                {
                    "enabled": boolean("create them"),
                    "clients": array("NetworkPolicyPeers allowed to reach the generator", "object"),
                },
                "NetworkPolicies",
            ),
            "tests": obj(
                {
                    "image": image("grpc-health-probe image"),
                    "rpcTimeout": string("timeout per check", pattern="^[0-9]+(ms|s|m)$"),
                },
                "helm test",
            ),
        },
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render())
