"""AdmissionReview v1 documents as a Kubernetes 1.30+ API server sends them to a validating
webhook: the objects after defaulting, with their managed fields and status, so the endpoint
is tried on the many fields (and the nesting) of real reviews, not on a trimmed sample."""

import copy
import uuid
from typing import Any

Object = dict[str, Any]

NAMESPACE = "claims"
IMAGE = "registry.example.com/claims-triage:2.4.1"


def _managed_fields(manager: str, operation: str) -> list[Object]:
    # What server-side field tracking records for an applied Deployment: nested far deeper
    # than the 16 levels this service allows its own request bodies.
    container = {
        "f:env": {
            'k:{"name":"MODEL_TOKEN"}': {
                ".": {},
                "f:name": {},
                "f:valueFrom": {"f:secretKeyRef": {"f:key": {}, "f:name": {}}},
            }
        },
        "f:image": {},
        "f:imagePullPolicy": {},
        "f:name": {},
        "f:ports": {'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
        "f:resources": {"f:limits": {"f:memory": {}}, "f:requests": {"f:cpu": {}}},
    }
    return [
        {
            "manager": manager,
            "operation": operation,
            "apiVersion": "apps/v1",
            "time": "2026-03-02T09:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:annotations": {".": {}}, "f:labels": {".": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {".": {}}},
                        "f:spec": {"f:containers": {'k:{"name":"model"}': container}},
                    },
                },
            },
        }
    ]


def pod_spec(image: str = IMAGE) -> Object:
    return {
        "containers": [
            {
                "name": "model",
                "image": image,
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {
                        "name": "MODEL_TOKEN",
                        "valueFrom": {"secretKeyRef": {"name": "claims-model", "key": "token"}},
                    }
                ],
                "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "250m"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {
                                "matchExpressions": [
                                    {
                                        "key": "app.kubernetes.io/name",
                                        "operator": "In",
                                        "values": ["claims-triage"],
                                    }
                                ]
                            },
                            "topologyKey": "kubernetes.io/hostname",
                        },
                    }
                ]
            }
        },
    }


def _metadata(name: str, annotations: dict[str, str] | None) -> Object:
    metadata: Object = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": "2026-03-02T09:00:00Z",
        "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "claims"},
        "managedFields": _managed_fields("kubectl-client-side-apply", "Update"),
    }
    if annotations is not None:
        metadata["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"apps/v1"}',
            **annotations,
        }
    return metadata


def _template(name: str, annotations: dict[str, str] | None, image: str) -> Object:
    metadata: Object = {"creationTimestamp": None, "labels": {"app.kubernetes.io/name": name}}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": pod_spec(image)}


def deployment(
    name: str = "claims-triage",
    *,
    annotations: dict[str, str] | None = None,
    template_annotations: dict[str, str] | None = None,
    image: str = IMAGE,
    replicas: int = 2,
) -> Object:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, annotations),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": _template(name, template_annotations, image),
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {},
    }


def stateful_set(
    name: str = "claims-embeddings",
    *,
    annotations: dict[str, str] | None = None,
    template_annotations: dict[str, str] | None = None,
    image: str = IMAGE,
) -> Object:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(name, annotations),
        "spec": {
            "replicas": 3,
            "serviceName": name,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": _template(name, template_annotations, image),
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "index", "creationTimestamp": None},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "10Gi"}},
                        "volumeMode": "Filesystem",
                    },
                    "status": {"phase": "Pending"},
                }
            ],
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "revisionHistoryLimit": 10,
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
        },
        "status": {"replicas": 0, "availableReplicas": 0},
    }


def pod(
    name: str = "claims-triage-batch",
    *,
    annotations: dict[str, str] | None = None,
    image: str = IMAGE,
) -> Object:
    metadata = _metadata(name, annotations)
    metadata["managedFields"][0]["apiVersion"] = "v1"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            **pod_spec(image),
            "serviceAccountName": "default",
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            ],
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


_RESOURCES = {
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "Pod": ("", "pods"),
}


def review(
    obj: Object | None,
    *,
    operation: str = "CREATE",
    old: Object | None = None,
    dry_run: bool = False,
    kind: str | None = None,
    name: str | None = None,
    uid: str | None = None,
) -> Object:
    """The AdmissionReview v1 the API server sends for `obj` (None for a DELETE's)."""
    kind = kind or (obj or old or {})["kind"]
    group, resource = _RESOURCES[kind]
    version = "v1"
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": resource}
    options_kind = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions"}.get(
        operation, "DeleteOptions"
    )
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": name or (obj or old or {})["metadata"]["name"],
            "namespace": NAMESPACE,
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:claims:deployer",
                "uid": "6f1e3c2a-0d0b-4c8e-9a57-1b2f3c4d5e6f",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:claims",
                    "system:authenticated",
                ],
                "extra": {
                    "authentication.kubernetes.io/pod-name": ["deployer-7d9f8"],
                    "authentication.kubernetes.io/pod-uid": [
                        "1c2d3e4f-aaaa-bbbb-cccc-0123456789ab"
                    ],
                },
            },
            "object": copy.deepcopy(obj),
            "oldObject": copy.deepcopy(old),
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind},
        },
    }


def gate(system: str, stage: str | None = None, release: str | None = None) -> dict[str, str]:
    """The readiness annotations."""
    annotations = {"readiness/system": system}
    if stage is not None:
        annotations["readiness/stage"] = stage
    if release is not None:
        annotations["readiness/release"] = release
    return annotations
