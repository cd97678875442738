"""A rendered, composed profile -> cloud-init user-data (#cloud-config, or MIME multipart)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import yaml

from skyctl.errors import ContextError

HEADER = "#cloud-config\n"
SUDO_ALL = "ALL=(ALL) NOPASSWD:ALL"
# Nova rejects user_data whose base64 form is longer than this (the DB column is a 64 KiB TEXT).
NOVA_USER_DATA_MAX_B64 = 65535
# Merge the user's own cloud-config into ours: their lists append, their keys do not erase ours.
RAW_MERGE_TYPE = "list(append)+dict(no_replace,recurse_list)+str()"
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*$")


# libyaml's emitter when PyYAML has it: a launch of many nodes renders once per node
class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100000)


def sudo_rule(value: bool | str) -> str | None:
    if value is True:
        return SUDO_ALL
    if value is False or value in ("", None):
        return None
    return str(value)


def cloud_config(r: dict[str, Any], *, hostname: str | None, login_user: str | None,
                 login_keys: list[str]) -> dict[str, Any]:
    """The #cloud-config document (a mapping) for a rendered profile."""
    cc: dict[str, Any] = {}
    if hostname:
        cc["hostname"] = hostname
        cc["preserve_hostname"] = False
    users = r.get("users") or []
    if users:
        out_users: list[Any] = ["default"]  # keep the image's own user as a way in
        for u in users:
            entry: dict[str, Any] = {"name": u["name"], "lock_passwd": True}
            rule = sudo_rule(u.get("sudo", False))
            if rule:
                entry["sudo"] = rule
            if u.get("groups"):
                entry["groups"] = ", ".join(u["groups"])
            if u.get("shell"):
                entry["shell"] = u["shell"]
            keys = list(u.get("ssh_authorized_keys") or [])
            if u["name"] == login_user:
                keys = _dedupe(keys + login_keys)
            if keys:
                entry["ssh_authorized_keys"] = keys
            out_users.append(entry)
        cc["users"] = out_users
    if login_user is None and login_keys:
        cc["ssh_authorized_keys"] = login_keys  # the image's default user
    ntp = r.get("ntp")
    if ntp and ntp.get("enabled", True):
        cc["ntp"] = {"enabled": True, **({"servers": ntp["servers"]} if ntp.get("servers") else {})}
    if r.get("packages"):
        cc["package_update"] = True
        cc["packages"] = list(r["packages"])
    files = r.get("files") or []
    if files:
        created = {u["name"] for u in users}
        wf = []
        for f in files:
            entry = {"path": f["path"], "content": f.get("content", ""),
                     "permissions": f.get("permissions", "0644"), "owner": f.get("owner", "root:root")}
            if f.get("append"):
                entry["append"] = True
            # write_files runs before users are created: files owned by them wait for the final stage
            if entry["owner"].split(":")[0] in created or entry["owner"].split(":")[-1] in created:
                entry["defer"] = True
            wf.append(entry)
        cc["write_files"] = wf
    if r.get("commands"):
        cc["runcmd"] = [list(c) if isinstance(c, list) else c for c in r["commands"]]
    return cc


def _dedupe(items: list[str]) -> list[str]:
    out: list[str] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def raw_cloud_config_text(part: str | dict[str, Any]) -> str:
    if isinstance(part, dict):
        return HEADER + dump_yaml(part)
    return part if part.lstrip().startswith("#cloud-config") else HEADER + part


def user_data(cc: dict[str, Any], raw: dict[str, list[Any]]) -> str:
    """#cloud-config text, or MIME multipart when the profiles carry their own raw parts."""
    ours = HEADER + dump_yaml(cc) if cc else HEADER
    cloud_parts = [raw_cloud_config_text(p) for p in raw.get("cloud_config") or []]
    scripts = [s if s.startswith("#!") else "#!/bin/sh\n" + s for s in raw.get("script") or []]
    if not cloud_parts and not scripts:
        return ours
    parts: list[tuple[str, str, str, str | None]] = [("cloud-config", "skyctl.cfg", ours, None)]
    parts += [("cloud-config", f"user-{i + 1}.cfg", p, RAW_MERGE_TYPE) for i, p in enumerate(cloud_parts)]
    parts += [("x-shellscript", f"user-{i + 1}.sh", s, None) for i, s in enumerate(scripts)]
    return multipart(parts)


def multipart(parts: list[tuple[str, str, str, str | None]]) -> str:
    """A deterministic MIME multipart (boundary from the content) that cloud-init accepts."""
    digest = hashlib.sha256("\0".join(p[2] for p in parts).encode()).hexdigest()[:24]
    boundary = f"==skyctl-{digest}=="
    body = [f'Content-Type: multipart/mixed; boundary="{boundary}"', "MIME-Version: 1.0", ""]
    for subtype, filename, text, merge_type in parts:
        body += [f"--{boundary}", f'Content-Type: text/{subtype}; charset="utf-8"', "MIME-Version: 1.0",
                 "Content-Transfer-Encoding: 8bit", f'Content-Disposition: attachment; filename="{filename}"']
        if merge_type:
            body.append(f"Merge-Type: {merge_type}")
        body += ["", text]  # the line break before a boundary belongs to the boundary
    body += [f"--{boundary}--", ""]
    return "\n".join(body)


def cloud_config_parts(text: str) -> list[str]:
    """Every cloud-config document inside user-data (one, or the cloud-config parts of a multipart)."""
    if text.startswith("#cloud-config"):
        return [text]
    if text.startswith("Content-Type: multipart/"):
        import email

        msg = email.message_from_string(text)
        return [p.get_payload(decode=True).decode("utf-8") for p in msg.walk()
                if p.get_content_type() == "text/cloud-config"]
    return []


def b64_size(text: str) -> int:
    n = len(text.encode("utf-8"))
    return 4 * ((n + 2) // 3)


def check_nova_size(text: str | None, *, profiles: tuple[str, ...] = ()) -> None:
    """Nova refuses user_data over 65535 bytes of base64: say so before anything launches."""
    if not text:
        return
    size = b64_size(text)
    if size > NOVA_USER_DATA_MAX_B64:
        names = ", ".join(f"'{p}'" for p in profiles)
        raise ContextError(f"user-data of profiles {names} is {size} bytes in base64; OpenStack Nova accepts "
                           f"at most {NOVA_USER_DATA_MAX_B64}",
                           hint="move large files into the image or fetch them at boot from a URL")


def check_hostname(name: str, *, field: str = "hostname", profile: str | None = None) -> str:
    if not HOSTNAME_RE.fullmatch(name) or len(name) > 253:
        raise ContextError(f"{field}: {name!r} is not a valid host name (letters, digits, '-', dots)",
                           source=f"profile '{profile}'" if profile else None)
    return name


def hostname_from_node_name(name: str) -> str:
    """A node name made into a valid host name ('web_1' -> 'web-1')."""
    label = re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-.")
    label = re.sub(r"-*\.-*", ".", label)[:253]
    return label or "node"
