import pytest


@pytest.fixture
def mirror_warmup() -> bool:
    """The app builds its readiness mirror at start-up, as in production: these tests read
    reports and metrics through it."""
    return True
