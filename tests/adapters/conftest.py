"""The per-architecture ``case`` fixture (``tests/_arch_cases.py``)."""

from _arch_cases import case as case  # noqa: F401
