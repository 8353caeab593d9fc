"""The fixture that runs a test on the lowest and on the highest supported ansible-core."""
from credential_support import core_bin  # noqa: F401 (a fixture, found by pytest by name)

__all__ = ["core_bin"]
