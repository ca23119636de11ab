"""Admission decisions: what a review asks to gate (`read_target`, no I/O), and the answer
(`decide`), judged and recorded by the lifecycle's gate check in the caller's unit of work."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.auth.roles import Principal
from app.errors import BadRequest, NotFound
from app.integrations.kubernetes.schemas import (
    ANNOTATIONS,
    RELEASE_ANNOTATION,
    STAGE_ANNOTATION,
    SYSTEM_ANNOTATION,
    AdmissionRequest,
    AdmissionResponse,
    AdmissionStatus,
    KubernetesObject,
    Operation,
)
from app.lifecycle import service as lifecycle_service
from app.readiness.scoring import BlockingItem
from app.schemas import Release
from app.systems import service as system_service
from app.systems.schemas import SYSTEM_KEY_PATTERN
from app.vocabulary import GateStage

DEFAULT_STAGE = GateStage.production
# What the API server answers its client with on every denial.
DENIED_CODE = 403
DENIED_REASON = "Forbidden"
# Release.version's bound; longer annotations are refused rather than cut.
MAX_RELEASE = 200
# The API server may cut a warning past 256 characters. (Kubernetes asks for 120 where it
# can: the service's warnings are, unless a name is long.)
MAX_WARNING = 256


class InvalidAdmissionReview(BadRequest):
    """A body that is JSON but no AdmissionReview v1 this service can answer."""

    type = "invalid-admission-review"
    title = "Not an AdmissionReview v1"


@dataclass(frozen=True)
class Target:
    """What a review asks to gate: a system, a gate stage and, if named, a release."""

    system: str
    stage: GateStage
    release: Release | None


def _where(request: AdmissionRequest) -> str:
    """The object as kubectl would name it: `Deployment claims/claims-triage`."""
    kind = request.kind.kind if request.kind else "the object"
    metadata = request.object.metadata if request.object else None
    name = request.name or (metadata.name or metadata.generateName if metadata else None)
    if not name:
        return kind
    return f"{kind} {request.namespace}/{name}" if request.namespace else f"{kind} {name}"


def allow(
    uid: str, *, warning: str | None = None, audit: dict[str, str] | None = None
) -> AdmissionResponse:
    return AdmissionResponse(
        uid=uid,
        allowed=True,
        warnings=[warning[:MAX_WARNING]] if warning else None,
        auditAnnotations=audit,
    )


def deny(uid: str, message: str, *, audit: dict[str, str] | None = None) -> AdmissionResponse:
    return AdmissionResponse(
        uid=uid,
        allowed=False,
        status=AdmissionStatus(code=DENIED_CODE, reason=DENIED_REASON, message=message),
        auditAnnotations=audit,
    )


def _annotations(obj: KubernetesObject) -> dict[str, str]:
    """The readiness annotations of an object: its own metadata's when they name a system,
    else its pod template's (a Deployment's or StatefulSet's `spec.template`), so the three
    always come from one place."""
    template = obj.spec.template if obj.spec else None
    for meta in (obj.metadata, template.metadata if template else None):
        annotations = (meta.annotations if meta else None) or {}
        if SYSTEM_ANNOTATION in annotations:
            return {name: annotations[name] for name in ANNOTATIONS if name in annotations}
    return {}


def _what_runs(obj: KubernetesObject) -> Any:
    """The part of an object that decides what runs: a workload's pod template, a Pod's
    spec (a Pod has no template)."""
    if obj.spec is None:
        return None
    if obj.spec.template is not None:
        return obj.spec.template.model_dump(mode="json")
    return obj.spec.model_dump(mode="json")


def _unchanged(request: AdmissionRequest) -> bool:
    """An update that changes neither what runs nor the readiness annotations: scaling,
    labels, a controller's bookkeeping (the Deployment controller's revision annotation)."""
    new, old = request.object, request.oldObject
    if request.operation != Operation.update or new is None or old is None:
        return False
    return _annotations(new) == _annotations(old) and _what_runs(new) == _what_runs(old)


def read_target(request: AdmissionRequest) -> Target | AdmissionResponse:
    """What the review asks to gate, or the answer when nothing needs the database: a
    request that creates or changes nothing that runs is admitted, one without the system
    annotation is admitted with a warning, and annotations that are not valid are denied."""
    uid = request.uid
    if request.operation not in (Operation.create, Operation.update) or request.object is None:
        return allow(uid)  # DELETE and CONNECT gate nothing, and neither does no object
    if request.subResource:
        return allow(uid)  # scale or status: what runs is the same
    if _unchanged(request):
        return allow(uid)
    annotations = _annotations(request.object)
    system = annotations.get(SYSTEM_ANNOTATION, "").strip()
    if not system:
        return allow(
            uid,
            warning=f"readiness: {_where(request)} has no {SYSTEM_ANNOTATION} annotation;"
            " nothing was checked",
        )
    if not re.fullmatch(SYSTEM_KEY_PATTERN, system):
        return deny(
            uid,
            f"readiness: {SYSTEM_ANNOTATION} {system[:70]!r} is not a system key"
            " (lower-case letters, digits and dashes, 2 to 63 characters).",
        )
    stage_name = annotations.get(STAGE_ANNOTATION, DEFAULT_STAGE.value).strip()
    try:
        stage = GateStage(stage_name)
    except ValueError:
        stages = ", ".join(stage.value for stage in GateStage)
        return deny(
            uid,
            f"readiness: {STAGE_ANNOTATION} {stage_name[:70]!r} is not a stage with a gate;"
            f" use one of: {stages} (default {DEFAULT_STAGE.value}).",
        )
    release_name = annotations.get(RELEASE_ANNOTATION, "").strip()
    if len(release_name) > MAX_RELEASE or "\x00" in release_name:
        # Recorded with the gate check: what Release.version and the database can hold.
        return deny(
            uid,
            f"readiness: {RELEASE_ANNOTATION} must be at most {MAX_RELEASE} characters,"
            " without NUL.",
        )
    release = Release(version=release_name) if release_name else None
    return Target(system=system, stage=stage, release=release)


def _items(blocking: tuple[BlockingItem, ...]) -> str:
    return "; ".join(
        f"{item.code.value} {item.control}" if item.control else item.code.value
        for item in blocking
    )


def decide(
    session: Session,
    *,
    uid: str,
    target: Target,
    dry_run: bool,
    actor: Principal,
    now: datetime,
) -> AdmissionResponse:
    """The answer for a target: the gate judged now and, unless `dry_run`, recorded as a
    gate check with its `gate.checked` event, as `POST .../gate-checks` records one.

    Admitted when the gate check allows it: a move the lifecycle allows whose gate
    passes, or a release moving into the stage the system is in, judged by that stage's
    gate for that release. Admission records the check, never a transition: a move is
    recorded by whoever makes it (`readiness gate --record`, MLflow, POST transitions)."""
    audit = {"system": target.system, "stage": target.stage.value}
    try:
        system = system_service.get_system(session, target.system)
    except NotFound:
        return deny(
            uid,
            f"readiness: no system {target.system!r} is registered; register it, or fix the"
            f" {SYSTEM_ANNOTATION} annotation.",
            audit=audit,
        )
    decision = lifecycle_service.judge_gate(
        session, system=system, target_stage=target.stage, release=target.release, now=now
    )
    recorded = "dry run, not recorded"
    if not dry_run:
        check = lifecycle_service.record_gate_check(
            session,
            system=system,
            decision=decision,
            release=target.release,
            actor=actor,
            now=now,
        )
        recorded = f"gate check {check.id}"
        audit["gate-check"] = str(check.id)
    if decision.allowed:
        audit["allowed"] = "true"
        # Admitted, but not moved: the stage changes only with a recorded transition.
        warning = (
            None
            if decision.release_move
            else f"readiness: {system.key} is in stage {system.stage}; record its move to"
            f" {target.stage.value} with a transition"
        )
        return allow(uid, warning=warning, audit=audit)
    audit["allowed"] = "false"
    reasons = []
    if not decision.move_valid:
        reasons.append(f"the lifecycle does not allow {system.stage} -> {target.stage.value}")
    if decision.blocking:
        reasons.append(
            f"score {decision.score:g} (needs {decision.required_score:g}), blocking:"
            f" {_items(decision.blocking)}"
        )
    return deny(
        uid,
        f"readiness: {system.key} may not run as {target.stage.value} (stage {system.stage},"
        f" policy v{decision.policy_version}, {recorded}): {'; '.join(reasons)}",
        audit=audit,
    )
