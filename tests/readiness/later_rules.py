"""A later release of the code, simulated: one scoring rule changed and the rules version
bumped with it, so every answer stored before is of other rules."""

import pytest

from app.readiness import rules_version, scoring
from app.readiness.scoring import ControlStatus


def upgrade_to_later_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the code is that of a later release, whose scoring rule counts partial
    evidence as nothing, and whose rules version says so."""
    monkeypatch.setitem(scoring.POINTS, ControlStatus.partial, 0.0)
    monkeypatch.setattr(rules_version, "RULES_VERSION", rules_version.RULES_VERSION + 1)
