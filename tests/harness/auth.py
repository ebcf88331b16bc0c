"""The API token every test stack is started with."""

from __future__ import annotations

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
