"""The bench's broker tests use the integration tests' broker (one found, or one started)."""

from tests.integration.conftest import brokers  # noqa: F401
