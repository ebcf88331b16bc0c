"""The test harness: real PostgreSQL, nginx, git and the app, for the tests and for bench/.

Import what you need from its modules (`from tests.harness.stacks import Stack`); the pytest
fixtures that use them live in the conftest.py files.
"""
