"""Fixtures for the module tests (see module_runner.py)."""
from module_runner import account, controlplane, run_module  # noqa: F401  (pytest fixtures)  pylint: disable=unused-import
