"""The template skyctl sends to oned, as XML (oned parses XML or its own syntax; XML needs
no guessing about quoting). Pure."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from xml.sax.saxutils import escape

from skyctl.model import NodeSpec, RenderedContext

from skyctl_opennebula.convert import DISPLAY_ATTRS, LABEL_ATTR_PREFIX


def one_context(ctx: RenderedContext) -> dict[str, str]:
    """The CONTEXT section: the context layer's own rendering, or one built from the
    cloud-init user-data and keys when only those are given."""
    if ctx.one_context:
        return {str(k).upper(): str(v) for k, v in ctx.one_context.items()}
    out: dict[str, str] = {}
    if ctx.user_data or ctx.ssh_public_keys:
        out["NETWORK"] = "YES"
    if ctx.ssh_public_keys:
        out["SSH_PUBLIC_KEY"] = "\n".join(k.strip() for k in ctx.ssh_public_keys)
    if ctx.user_data:
        out["USER_DATA"] = base64.b64encode(ctx.user_data.encode("utf-8")).decode("ascii")
        out["USERDATA_ENCODING"] = "base64"
    return out


def label_attrs(labels: Mapping[str, str]) -> dict[str, str]:
    return {LABEL_ATTR_PREFIX + k.upper(): str(v) for k, v in labels.items()}


def _el(name: str, value: str | Mapping[str, str]) -> str:
    if isinstance(value, Mapping):
        return f"<{name}>" + "".join(_el(k, v) for k, v in value.items()) + f"</{name}>"
    return f"<{name}>{escape(str(value))}</{name}>"


def nic(network: str | None) -> dict[str, str] | None:
    if not network:
        return None
    return {"NETWORK_ID": network} if network.isdigit() else {"NETWORK": network}


def vm_template(spec: NodeSpec, context: RenderedContext, *, network: str | None, name: str | None = None,
                image_id: str | None = None) -> str:
    """Extra template for one.template.instantiate, or (with name and image_id) a full one
    for one.vm.allocate."""
    attrs: list[tuple[str, str | Mapping[str, str]]] = []
    if name is not None:
        attrs.append(("NAME", name))
    cpus = spec.flavor.cpus
    attrs += [("CPU", str(cpus)), ("VCPU", str(cpus)), ("MEMORY", str(spec.flavor.memory_mib))]
    if image_id is not None:
        attrs.append(("DISK", {"IMAGE_ID": image_id}))
    n = nic(network)
    if n:
        attrs.append(("NIC", n))
    ctx = one_context(context)
    if ctx:
        attrs.append(("CONTEXT", ctx))
    attrs += list(label_attrs(spec.labels).items())
    # The logical names the user asked for, so `ps` shows the same words on every cloud.
    attrs += [(k, v) for k, v in ((DISPLAY_ATTRS[0], spec.image_name), (DISPLAY_ATTRS[1], spec.size_name)) if v]
    return "<TEMPLATE>" + "".join(_el(k, v) for k, v in attrs) + "</TEMPLATE>"
