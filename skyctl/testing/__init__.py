"""Test helpers for skyctl and its drivers, shipped as the pytest plugin `skyctl.testing.plugin`
(entry point group `pytest11`): the driver contract suite (`contract`), the in-memory driver
(`memory`) and in-process sandbox sites on loopback (`sandbox`).

Nothing in skyctl proper imports this package; only `plugin` and `contract` import pytest.
"""
