"""Shared trojan tasks (see tests/_tasks.py)."""

from _tasks import digits_trojan, lm_trojan  # noqa: F401
