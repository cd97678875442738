"""Fixtures for the component tier (loopback servers in this process): openstacksdk connections
to a sandbox site's clouds, and oned's official XML schemas to check the OpenNebula front's
replies against."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

XSD_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "opennebula" / "xsd"
ONE_NAMESPACE = "http://opennebula.org/XMLSchema"


@pytest.fixture
def connect() -> Iterator[Callable[[Path, str], Any]]:
    """connect(clouds_yaml, cloud): an openstacksdk connection for one entry of that clouds.yaml
    (the caller closes it)."""
    import openstack
    import openstack.config

    def _connect(clouds_yaml: Path, cloud: str) -> Any:
        config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)], load_envvars=False)
        return openstack.connection.Connection(config=config.get_one(cloud=cloud))

    yield _connect


@functools.cache
def _one_schema(name: str) -> Any:
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(XSD_DIR / name)))


def _with_one_namespace(body: str) -> bytes:
    """Real replies carry no namespace; the schemas declare one (see the README of the schemas)."""
    from lxml import etree

    root = etree.fromstring(body.encode("utf-8"))
    for el in root.iter():
        if isinstance(el.tag, str) and not el.tag.startswith("{"):
            el.tag = f"{{{ONE_NAMESPACE}}}{el.tag}"
    return etree.tostring(root)


def _one_schema_errors(body: str, xsd: str) -> list[str]:
    from lxml import etree

    schema = _one_schema(xsd)
    if schema.validate(etree.fromstring(_with_one_namespace(body))):
        return []
    return [f"{e.line}: {e.message}" for e in schema.error_log]


@pytest.fixture(scope="session")
def one_schema_errors() -> Callable[[str, str], list[str]]:
    """one_schema_errors(body, xsd): where an oned reply body breaks the official schema `xsd`
    (tests/fixtures/opennebula/xsd), one line each; [] when it is valid."""
    return _one_schema_errors


@pytest.fixture
def os_site(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A sandbox OpenStack site whose VMs are SSH guests (floating IPs, security groups)."""
    from skyctl.sandbox.guest.server import VmSshFabric
    from skyctl.testing.sandbox import start_openstack_site

    s = start_openstack_site(tmp_path)
    fabric = VmSshFabric(tmp_path / "vms")
    fabric.start()
    fabric.attach(s.world, 0)
    try:
        yield s, fabric
    finally:
        s.stop()
        fabric.stop()


@pytest.fixture
def os_conn(os_site: tuple[Any, Any], connect: Callable[[Path, str], Any]) -> Iterator[Any]:
    """openstacksdk's connection to `os_site`."""
    site = os_site[0]
    c = connect(site.clouds_yaml, site.cloud)
    yield c
    c.close()
