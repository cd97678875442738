"""OpenNebula templates as oned reads them: its own syntax or XML to (NAME, value) pairs,
merged as Template::merge does, with CONTEXT variables ($NAME, $NIC[IP]...) substituted, and
which attributes a VM keeps in TEMPLATE (the rest end in USER_TEMPLATE). Pure text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

Template = list[tuple[str, "str | dict[str, str]"]]

# Attributes oned keeps in a VM's TEMPLATE; anything else a user sends lands in USER_TEMPLATE.
VM_TEMPLATE_ATTRS = frozenset({
    "AUTOMATIC_DS_REQUIREMENTS", "AUTOMATIC_NIC_REQUIREMENTS", "AUTOMATIC_REQUIREMENTS",
    "CLONING_TEMPLATE_ID", "CONTEXT", "CPU", "CPU_COST", "DISK", "DISK_COST", "EMULATOR", "FEATURES",
    "HYPERV_OPTIONS", "GRAPHICS", "VIDEO", "IMPORTED", "INPUT", "MEMORY", "MEMORY_COST", "MEMORY_MAX",
    "MEMORY_SLOTS", "MEMORY_RESIZE_MODE", "NIC", "NIC_ALIAS", "NIC_DEFAULT", "NUMA_NODE", "OS", "PCI",
    "RAW", "SECURITY_GROUP_RULE", "SNAPSHOT", "SPICE_OPTIONS", "SUBMIT_ON_HOLD", "TEMPLATE_ID",
    "TM_MAD_SYSTEM", "TOPOLOGY", "TPM", "VCPU", "VCPU_MAX", "VMGROUP", "VMID", "SCHED_ACTION", "NAME",
})

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]*")


def parse_template(text: str) -> Template:
    """Parse an OpenNebula template, in its own syntax or in XML, to (NAME, value) pairs.

    Vector attributes (DISK = [ IMAGE_ID = "0" ]) become dicts; names are upper-cased as
    oned does. Raises ValueError with a parse message."""
    text = text or ""
    if text.lstrip().startswith("<"):
        return _parse_xml_template(text)
    out: Template = []
    i, n = 0, len(text)

    def skip_ws(i: int, newlines: bool = True) -> int:
        while i < n:
            c = text[i]
            if c == "#":
                while i < n and text[i] != "\n":
                    i += 1
            elif c in " \t\r" or (newlines and c == "\n"):
                i += 1
            else:
                break
        return i

    def read_value(i: int, stop: str) -> tuple[str, int]:
        # The unquoting oned's parser does; skyctl.context.opennebula quotes for it on its own,
        # so tests must not agree with themselves.
        if i < n and text[i] == '"':
            i += 1
            buf: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\':
                    i += 1
                buf.append(text[i])
                i += 1
            if i >= n:
                raise ValueError("syntax error, unterminated string")
            return "".join(buf), i + 1
        start = i
        while i < n and text[i] not in stop:
            i += 1
        return text[start:i].strip(), i

    while True:
        i = skip_ws(i)
        if i >= n:
            return out
        m = _NAME_RE.match(text, i)
        if not m:
            raise ValueError(f"syntax error, unexpected {text[i]!r} at position {i}")
        name = m.group(0).upper()
        i = skip_ws(m.end(), newlines=False)
        if i >= n or text[i] != "=":
            raise ValueError(f"syntax error, expecting '=' after {name}")
        i = skip_ws(i + 1, newlines=False)
        if i < n and text[i] == "[":
            vector: dict[str, str] = {}
            i += 1
            while True:
                i = skip_ws(i)
                if i < n and text[i] == "]":
                    i += 1
                    break
                m = _NAME_RE.match(text, i)
                if not m:
                    raise ValueError(f"syntax error in vector attribute {name}")
                key = m.group(0).upper()
                i = skip_ws(m.end())
                if i >= n or text[i] != "=":
                    raise ValueError(f"syntax error, expecting '=' after {name}/{key}")
                value, i = read_value(skip_ws(i + 1), ",]\n")
                vector[key] = value
                i = skip_ws(i)
                if i < n and text[i] == ",":
                    i += 1
            out.append((name, vector))
        else:
            value, i = read_value(i, "\n")
            out.append((name, value))


def _parse_xml_template(text: str) -> Template:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ValueError(f"syntax error in XML template: {e}") from None
    out: Template = []
    for child in root:
        if len(child):
            out.append((child.tag.upper(), {g.tag.upper(): (g.text or "") for g in child}))
        else:
            out.append((child.tag.upper(), child.text or ""))
    return out


def merge_templates(base: Template, extra: Template) -> Template:
    """oned's Template::merge: an attribute in `extra` replaces every same-named one in `base`."""
    names = {k for k, _ in extra}
    return [(k, v) for k, v in base if k not in names] + list(extra)


def first(tmpl: Template, name: str) -> Any:
    """The value of the first attribute called `name`, or None."""
    for k, v in tmpl:
        if k == name:
            return v
    return None


_VAR_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)(?:\[([A-Za-z0-9_]+)[^\]]*\])?")


def substitute(value: str, variables: Mapping[str, str], nic: Mapping[str, str]) -> str:
    """oned's CONTEXT variables: $NAME, $VMID, $UNAME, a template attribute ($CPU...),
    $NIC[IP] / $NETWORK[IP, ...] from the VM's first NIC (`nic`); $USER[...] comes from the
    owner's (empty) template and an unknown variable becomes empty."""
    if "$" not in value:
        return value

    def one(m: re.Match[str]) -> str:
        name, attr = m.group(1).upper(), (m.group(2) or "").upper()
        if attr:
            if name in ("NIC", "NETWORK"):
                return nic.get(attr, "")
            return ""
        return variables.get(name, "")

    return _VAR_RE.sub(one, value)
