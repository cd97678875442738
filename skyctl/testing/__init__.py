"""Test helpers for skyctl and its drivers, shipped as the pytest plugin `skyctl.testing.plugin`
(entry point group `pytest11`): the driver contract suite (`contract`), the in-memory driver
(`memory`), in-process sandbox sites on loopback (`sandbox`) and ways to run the CLI
(`cli`).

Nothing in skyctl proper imports this package; only `plugin` and `contract` import pytest.
"""
