import pytest

from tests.deploy.dockerfile import Dockerfile, read_dockerfile


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return read_dockerfile()
