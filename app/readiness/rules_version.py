"""The version of the readiness rules this code applies.

A stored answer records the policy version it was evaluated under and this number. The
policy is data (a new version re-evaluates every system when it is activated); the rules are
code: how controls score, how tiers derive, what blocks a gate and when time changes an
answer. When a release changes what any of those mean, the answers already stored were
computed by rules that no longer exist, so they are stale: reads evaluate afresh until the
system is stored again, and `make reevaluate` (or the start-up re-evaluation,
READINESS_REEVALUATE_ON_START) stores every such answer anew.

Bump RULES_VERSION in the same change that alters the rules.
tests/readiness/test_rules_version.py keeps a digest of golden evaluations per version and
fails when the evaluations change but the version does not.
"""

# 2: release-bound evidence (`release_evidence_missing`), and the answer's `release` and
# `current_release`.
# 3: approvals and waivers given with a revoked API key no longer count, and approvers are
# counted by person (a key's `person`). The scoring rule itself is unchanged (same golden
# digest); what changed is which approvals and waivers reach it, so answers stored before
# may count a revoked key's and are stored anew.
# 4: classification confirmation (`classification_unconfirmed`).
RULES_VERSION = 4
