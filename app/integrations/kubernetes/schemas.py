"""AdmissionReview v1 (admission.k8s.io/v1), as the Kubernetes API server sends and reads it.

Only what the webhook reads is declared. Kubernetes sends many more fields and adds some over
time, and its API conventions ask clients to tolerate them: the review and its request ignore
fields they do not declare, and the admitted objects keep theirs (`extra="allow"`), so the
parts that decide what runs (`spec`) can be compared between an update's two objects. Field
names are Kubernetes' own (camelCase)."""

from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

ADMISSION_API_VERSION: Final = "admission.k8s.io/v1"
ADMISSION_KIND: Final = "AdmissionReview"

# The annotations that name what to gate.
SYSTEM_ANNOTATION = "readiness/system"
STAGE_ANNOTATION = "readiness/stage"
RELEASE_ANNOTATION = "readiness/release"
ANNOTATIONS = (SYSTEM_ANNOTATION, STAGE_ANNOTATION, RELEASE_ANNOTATION)

_UID = "705ab4f5-6393-11e8-b7cc-42010a800002"
_ANNOTATIONS = {
    SYSTEM_ANNOTATION: "claims-triage",
    STAGE_ANNOTATION: "production",
    RELEASE_ANNOTATION: "2.4.1",
}
REVIEW_EXAMPLE: dict[str, Any] = {
    "apiVersion": ADMISSION_API_VERSION,
    "kind": ADMISSION_KIND,
    "request": {
        "uid": _UID,
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "claims-triage",
        "namespace": "claims",
        "operation": "CREATE",
        "userInfo": {
            "username": "system:serviceaccount:claims:deployer",
            "uid": "6f1e3c2a-0d0b-4c8e-9a57-1b2f3c4d5e6f",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:claims"],
        },
        "object": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "claims-triage",
                "namespace": "claims",
                "labels": {"app.kubernetes.io/name": "claims-triage"},
                "annotations": _ANNOTATIONS,
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "claims-triage"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "claims-triage"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "model",
                                "image": "registry.example.com/claims-triage:2.4.1",
                            }
                        ]
                    },
                },
            },
        },
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    },
}


class GroupVersionKind(BaseModel):
    model_config = ConfigDict(extra="ignore")

    group: str = Field(default="", max_length=253, description='"" for the core group.')
    version: str = Field(max_length=63)
    kind: str = Field(max_length=63)


class GroupVersionResource(BaseModel):
    model_config = ConfigDict(extra="ignore")

    group: str = Field(default="", max_length=253)
    version: str = Field(max_length=63)
    resource: str = Field(max_length=63)


class UserInfo(BaseModel):
    """Who asked the API server; kept in no record (the gate check's actor is the caller
    of this service, the API server's key)."""

    model_config = ConfigDict(extra="ignore")

    username: str | None = None
    uid: str | None = None
    groups: list[str] | None = None


class Operation(StrEnum):
    create = "CREATE"
    update = "UPDATE"
    delete = "DELETE"
    connect = "CONNECT"


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    namespace: str | None = None
    generateName: str | None = None
    annotations: dict[str, str] | None = Field(
        default=None,
        description=(
            f"`{SYSTEM_ANNOTATION}` names the system to gate, `{STAGE_ANNOTATION}` the gate"
            f" (`pilot` or `production`, default `production`), `{RELEASE_ANNOTATION}` the"
            " release recorded with the gate check."
        ),
    )


class PodTemplate(BaseModel):
    """A workload's pod template (`spec.template`)."""

    model_config = ConfigDict(extra="allow")

    metadata: ObjectMeta | None = None


class ObjectSpec(BaseModel):
    model_config = ConfigDict(extra="allow")

    template: PodTemplate | None = Field(
        default=None,
        description="The pod template of a Deployment or StatefulSet; a Pod has none.",
    )


class KubernetesObject(BaseModel):
    """The object admitted: a Deployment, StatefulSet or Pod, with every field it has."""

    model_config = ConfigDict(extra="allow")

    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta | None = None
    spec: ObjectSpec | None = None


class AdmissionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uid: str = Field(
        min_length=1,
        max_length=128,
        description="Identifies this admission call; the answer's `response.uid` echoes it.",
    )
    kind: GroupVersionKind | None = None
    resource: GroupVersionResource | None = None
    subResource: str | None = Field(
        default=None,
        max_length=63,
        description="Set for a subresource (`scale`, `status`): admitted without a check.",
    )
    requestKind: GroupVersionKind | None = None
    requestResource: GroupVersionResource | None = None
    requestSubResource: str | None = Field(default=None, max_length=63)
    name: str | None = None
    namespace: str | None = None
    operation: Operation | None = Field(
        default=None, description="Only CREATE and UPDATE are gated; others are admitted."
    )
    userInfo: UserInfo | None = None
    object: KubernetesObject | None = Field(
        default=None, description="The object as it would be stored; null for DELETE."
    )
    oldObject: KubernetesObject | None = Field(
        default=None,
        description=(
            "UPDATE: the object as stored. An update that changes neither what runs (the pod"
            " template, or a Pod's spec) nor the readiness annotations is admitted unchecked."
        ),
    )
    dryRun: StrictBool | None = Field(
        default=None,
        description="True: the gate is evaluated and answered, and no gate check is recorded.",
    )
    options: dict[str, Any] | None = None


class AdmissionReview(BaseModel):
    """What the API server sends: an AdmissionReview v1 with its `request`."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [REVIEW_EXAMPLE]})

    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


class AdmissionStatus(BaseModel):
    """A Kubernetes `Status` (meta/v1): what the API server tells its client on a denial."""

    code: int = Field(description="403 for every denial (the API server answers with it).")
    reason: str = Field(description="`Forbidden`.")
    message: str = Field(
        description="Why: each blocking item as its code and control, or what is wrong with"
        " the annotations or the system."
    )


class AdmissionResponse(BaseModel):
    uid: str = Field(description="The request's `uid`.")
    allowed: bool
    status: AdmissionStatus | None = Field(default=None, description="Only on a denial.")
    warnings: list[str] | None = Field(
        default=None,
        description="Shown to the client (kubectl prints them), such as a missing annotation.",
    )
    auditAnnotations: dict[str, str] | None = Field(
        default=None,
        description=(
            "Written to the API server's audit log under the webhook's name: the system, the"
            " stage and, once recorded, the gate check's id."
        ),
    )


class AdmissionReviewResponse(BaseModel):
    """What the webhook answers: the same AdmissionReview v1 with its `response`."""

    apiVersion: Literal["admission.k8s.io/v1"] = ADMISSION_API_VERSION
    kind: Literal["AdmissionReview"] = ADMISSION_KIND
    response: AdmissionResponse
