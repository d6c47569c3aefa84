from __future__ import annotations

from collections.abc import Iterator

import pytest

from hosts import agent_handlers


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Tests that register agent handlers get an empty registry and leave it as it was."""
    snapshot = agent_handlers.registry_snapshot()
    agent_handlers.registry_clear()
    yield
    agent_handlers.registry_restore(snapshot)
