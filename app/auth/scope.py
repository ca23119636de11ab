"""Who may say what: the team scope of writes, attestation rights and independent approval.
Pure rules over a principal and plain values; services call them with the locked system."""

from collections.abc import Iterable

from app.auth.roles import Principal, Role
from app.errors import AttestationRole, NotIndependent, OutOfScope, TierLoweringNeedsApprover
from app.policies.document import PolicyRules


def _teams(principal: Principal) -> str:
    return ", ".join(sorted(principal.teams or ()))


def ensure_acts_for(principal: Principal, *, system_key: str, owner_team: str | None) -> None:
    """403 out-of-scope unless the principal may write to a system of `owner_team`."""
    if principal.acts_for(owner_team):
        return
    owner = f"owned by team '{owner_team}'" if owner_team else "without an owner team"
    raise OutOfScope(
        f"System '{system_key}' is {owner}; this identity acts for {_teams(principal)} only.",
        owner_team=owner_team,
        teams=sorted(principal.teams or ()),
    )


def ensure_may_own(principal: Principal, *, team: str | None) -> None:
    """403 out-of-scope unless the principal may give a system the owner team `team`:
    a scoped identity never hands a system to a team outside its scope, nor leaves it
    without an owner."""
    if principal.acts_for(team):
        return
    raise OutOfScope(
        (
            f"This identity acts for {_teams(principal)} only, so a system it writes must be"
            f" owned by one of them, not {f'{team!r}' if team else 'no team'}."
        ),
        owner_team=team,
        teams=sorted(principal.teams or ()),
    )


def ensure_may_attest(principal: Principal, *, control: str, rules: PolicyRules) -> None:
    """403 attestation-role unless the principal's role is the one the policy names for
    recording this control's evidence (`attested_by`), or above. Recording it, concluding
    a pilot that records it and waiving it (waived counts as met) all need that role."""
    needed = rules.attesting_role(control)
    if needed is None or principal.role.allows(needed):
        return
    raise AttestationRole(
        f"The active policy needs the {needed.value} role or above to record evidence for"
        f" {control}; this identity has {principal.role.value}.",
        control=control,
        required_role=needed.value,
    )


def independent_of(teams: Iterable[str] | None, owner_team: str | None) -> bool:
    """Whether an approver acting for `teams` (None: platform-wide) stands outside the owner
    team. One that is scoped yet acts for no team (a claim that named none) is not known to
    stand outside any."""
    if teams is None or owner_team is None:
        return True
    teams = frozenset(teams)
    return bool(teams) and owner_team not in teams


def ensure_independent(
    principal: Principal, *, owner_team: str | None, tier: str, rules: PolicyRules
) -> None:
    """403 not-independent when the policy has the tier need independent approval and the
    approver is scoped to the system's owner team. Platform-wide approvers are independent."""
    required = rules.tier(tier).independent_approval
    if required and not independent_of(principal.teams, owner_team):
        raise NotIndependent(
            f"Approvals of {tier}-tier systems must come from outside the owner team"
            f" '{owner_team}'.",
            owner_team=owner_team,
        )


def ensure_may_lower_tier(principal: Principal, *, from_tier: str, to_tier: str) -> None:
    if principal.role.allows(Role.approver):
        return
    raise TierLoweringNeedsApprover(
        f"This change lowers the risk tier from {from_tier} to {to_tier}, which needs the"
        f" approver role or above; this identity has {principal.role.value}.",
        from_tier=from_tier,
        to_tier=to_tier,
        required_role=Role.approver.value,
    )
