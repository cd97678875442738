"""`skyctl context list | show | render | validate`: context profiles, and what each cloud receives."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

import enum
from typing import Annotated

import typer

from skyctl.cli.options import OutputOpt, VarFileOpt, VarOpt, parse_vars
from skyctl.cli.terminal import OutputFormat, term

app = typer.Typer(help="Context profiles: list, show, render, validate.", no_args_is_help=True)


class Cloud(str, enum.Enum):
    openstack = "openstack"
    opennebula = "opennebula"


@app.command("list")
def list_(output: OutputOpt = OutputFormat.table) -> None:
    """List the profiles: built-in ones and your own (in ~/.config/skyctl/contexts)."""
    from skyctl.context import list_profiles

    rows = list_profiles()
    term().emit(rows, output, table=lambda rs: term().table(
        ["NAME", "SOURCE", "DESCRIPTION"], [(r["name"], r["source"], r["description"]) for r in rs]))


@app.command()
def show(name: Annotated[str, typer.Argument(help="Profile name or path.")],
         output: OutputOpt = OutputFormat.table) -> None:
    """Show a profile's description and its variables."""
    from skyctl.context import describe

    info = describe(name)

    def table(d):  # type: ignore[no-untyped-def]
        from rich.console import Group
        from rich.text import Text

        rows = [(n, v["type"], "yes" if v["required"] else "", "yes" if v["secret"] else "",
                 "" if v["default"] is None else _shown(v["default"]), v["description"])
                for n, v in d["variables"].items()]
        head = Text(f"{d['name']} ({d['source']}: {d['path']})\n{d['description']}\n")
        if not rows:
            return Group(head, Text("no variables"))
        return Group(head, term().table(["VARIABLE", "TYPE", "REQUIRED", "SECRET", "DEFAULT", "DESCRIPTION"], rows))

    term().emit(info, output, table=table)


def _shown(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ",".join(str(i) for i in v) or "[]"
    return str(v)


@app.command()
def render(
    names: Annotated[list[str], typer.Argument(metavar="NAME...", help="Profiles (names or paths), composed in order.")],
    for_: Annotated[Cloud, typer.Option("--for", help="The cloud whose input to print.", case_sensitive=False)],
    var: VarOpt = None,
    var_file: VarFileOpt = None,
    hostname: Annotated[str | None, typer.Option("--hostname", metavar="NAME",
                                                 help="Node name, for profiles that use node.name.")] = None,
    reveal_secrets: Annotated[bool, typer.Option("--reveal-secrets",
                                                 help="Print secret values instead of ****.")] = False,
    site: Annotated[str | None, typer.Option("--site", metavar="SITE",
                                             help="OpenNebula: merge into this site's template CONTEXT, as a "
                                                  "launch there does.")] = None,
    image: Annotated[str | None, typer.Option("--image", metavar="IMAGE",
                                              help="With --site: the logical image (default: the federation's).")]
    = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Print exactly what the cloud will receive: user-data for OpenStack, the CONTEXT for OpenNebula."""
    from skyctl.context import build_context, check_for_cloud, one_template
    from skyctl.keys import default_ssh_key

    built = build_context(list(names), variables=parse_vars(var), var_files=list(var_file or []),
                          ssh_public_keys=[default_ssh_key().public], hostname=hostname)
    for w in built.warnings:
        term().warn(w)
    check_for_cloud(built.rendered, for_.value, profiles=built.profiles)
    ctx = built.rendered if reveal_secrets else built.masked
    if for_ is Cloud.openstack:
        term().emit({"user_data": ctx.user_data}, output, table=lambda d: d["user_data"])
    else:
        context = _site_context(ctx, site, image) if site else dict(ctx.one_context)
        term().emit({"context": context}, output, table=lambda d: one_template(d["context"]))


def _site_context(ctx, site_name: str, image: str | None) -> dict:  # type: ignore[no-untyped-def]
    """The CONTEXT as `site_name`'s driver sends it: merged into its template's own."""
    from skyctl.cli.runtime import load_federation
    from skyctl.drivers import registry
    from skyctl.errors import ConfigError

    fed = load_federation()
    site = fed.site(site_name)
    logical = image or fed.defaults.image
    if logical is None:
        raise ConfigError("no image to read the template of: give --image", path="--image")
    mapped = (fed.images.get(logical) or {}).get(site_name, logical)
    template = str(getattr(mapped, "name", mapped))
    driver = registry.load(site.driver, site=site_name)(site)
    try:
        merge = getattr(driver, "site_context", None)
        if merge is None:
            raise ConfigError(f"site {site_name!r} ({site.driver}) has no template CONTEXT to merge into",
                              path="--site")
        return merge(ctx, template)
    finally:
        driver.close()


@app.command()
def validate(path: Annotated[str, typer.Argument(metavar="FILE", help="A profile file.")],
             output: OutputOpt = OutputFormat.table) -> None:
    """Check a profile file: its fields, templates, declared variables, and a trial render."""
    import shutil

    from skyctl.context import validate_file

    exe = shutil.which("cloud-init")
    result = validate_file(path, check_cloud_config=(lambda doc: _cloud_init_schema(exe, doc)) if exe else None)
    result.setdefault("cloud_init_schema", "not checked (cloud-init is not installed)")
    for caveat in result.get("caveats") or []:
        term().warn(f"profile '{result['name']}' cannot work everywhere: {caveat}")
    term().emit(result, output, table=lambda r: f"{r['path']}: valid profile '{r['name']}' "
                f"({r['variables']} variables; cloud-init schema: {r['cloud_init_schema']})")


def _cloud_init_schema(exe: str, doc: str) -> str | None:
    """cloud-init's own schema check of one cloud-config document: None, or its complaint."""
    import os
    import subprocess
    import tempfile

    fd, name = tempfile.mkstemp(prefix="skyctl-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(doc)
        proc = subprocess.run([exe, "schema", "--config-file", name], capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(name)
    if proc.returncode == 0:
        return None
    text = " ".join((proc.stderr + " " + proc.stdout).replace(name, "FILE").split())
    text = text.removeprefix("Error: ").removesuffix("Cloud config schema deprecations:").strip()
    return text or f"cloud-init schema exited {proc.returncode}"
