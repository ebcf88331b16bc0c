"""DropHost's tests; tests/harness/ is what they (and bench/) start the real parts with."""

from __future__ import annotations

import pytest

# The harness's helpers assert (git() on git's exit status, for one): pytest shows the values
# there as it does in conftest.py, where they lived before. Outside pytest this does nothing.
pytest.register_assert_rewrite("tests.harness")
