"""Validate oned reply bodies against the official schemas (copied in tests/fixtures)."""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

XSD_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "opennebula" / "xsd"
NAMESPACE = "http://opennebula.org/XMLSchema"


@functools.cache
def schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_DIR / name)))


def with_namespace(body: str) -> bytes:
    """Real replies carry no namespace; the schemas declare one (see the README of the schemas)."""
    root = etree.fromstring(body.encode("utf-8"))
    for el in root.iter():
        if isinstance(el.tag, str) and not el.tag.startswith("{"):
            el.tag = f"{{{NAMESPACE}}}{el.tag}"
    return etree.tostring(root)


def errors(body: str, xsd: str) -> list[str]:
    s = schema(xsd)
    doc = etree.fromstring(with_namespace(body))
    if s.validate(doc):
        return []
    return [f"{e.line}: {e.message}" for e in s.error_log]
