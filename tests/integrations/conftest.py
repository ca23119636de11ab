"""The command line tests' fixtures, for the tests that ask every integration the same
question: a live server with a key of each role (`service`), and the tool (`cli`)."""

from tests.cli.conftest import cli, service

__all__ = ["cli", "service"]
