"""`skyctl image import | list | replicate`: endorsed (HEPiX) image lists and what each site holds."""

# No `from __future__ import annotations` here: typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 10 ms of `skyctl --help`).

from typing import Annotated, Any

import typer

from skyctl.cli.options import OutputOpt
from skyctl.cli.terminal import OutputFormat, term

app = typer.Typer(help="Endorsed images: import signed HEPiX image lists, check each site's copy, "
                       "replicate images to sites.", no_args_is_help=True)


@app.command("import")
def import_(
    source: Annotated[str, typer.Argument(metavar="URL|FILE|LIST",
                                          help="The signed list: a URL, a file, or a configured list's name "
                                               "(fetched from its url).")],
    list_name: Annotated[str | None, typer.Option("--list", metavar="NAME",
                                                  help="Which configured image list this is (image_lists: in "
                                                       "the federation file).")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Verify an image list's S/MIME signature, signer and expiry, then keep it.

    The signer must chain to the list's trusted certificate (`trust:`, a CA or the endorser's
    own certificate) and carry the expected subject (`subject:`); the list must not have
    expired. Anything else is one line naming what failed, and nothing is imported.
    """
    from skyctl.cli.runtime import load_federation
    from skyctl.ops.images import import_list

    info = import_list(load_federation(), source, name=list_name)
    term().emit(info, output, table=lambda d: term().table(
        ["LIST", "TITLE", "ENDORSER", "EXPIRES", "IMAGES"],
        [(d["list"], d["title"], d["endorser"], d["expires"], d["images"])]))


def _table(rows: list[dict[str, Any]]) -> Any:
    out = []
    for r in rows:
        head = (r["image"], r["list"] or "-", r["endorser"] or (r["problem"] or "-"), r["expires"] or "-")
        if not r["sites"]:
            out.append((*head, "-", "-", "-", "-"))
        for i, s in enumerate(r["sites"]):
            sha = (s["sha512"] or "")[:16] + ("..." if s["sha512"] else "-")
            out.append((*(head if i == 0 else ("", "", "", "")), s["site"], s["image"], sha, s["status"]))
    return term().table(["IMAGE", "LIST", "ENDORSER", "EXPIRES", "SITE", "SITE IMAGE", "SHA512", "STATUS"], out)


@app.command("list")
def list_(output: OutputOpt = OutputFormat.table) -> None:
    """Each logical image: its endorsed list, endorser and expiry, and on each site the image it
    maps to, its sha512 and whether that is `verified`, a `mismatch`, `unknown` or `missing`.

    Glance reports sha512 (`os_hash_value`); OpenNebula images carry no standard hash, so only
    images skyctl uploaded itself (and recorded the hash of) can be verified there.
    """
    from skyctl.cli.runtime import exit_partial, open_sky
    from skyctl.ops.images import image_report

    with open_sky() as sky:
        rows, errors = image_report(sky)
    term().emit(rows, output, table=_table)
    exit_partial(errors)


class _Bar:
    """Bytes, total and rate on a terminal (rich's transfer columns); silent when piped."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> "_Bar":
        t = term()
        if t.err.is_terminal:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), console=t.err, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=None)
        return self

    def __call__(self, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


@app.command()
def replicate(
    name: Annotated[str, typer.Argument(metavar="IMAGE", help="A logical image bound to an endorsed list entry.")],
    to: Annotated[str, typer.Option("--to", metavar="SITE", help="The site that needs a copy.")],
    from_: Annotated[str | None, typer.Option("--from", metavar="SITE|URL",
                                              help="Where to read it (default: a site holding a verified copy, "
                                                   "else the list's hv:uri).")] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Copy an endorsed image to SITE: stream it, hash it as it streams, upload it, check the
    hash the cloud reports, and map the logical image to the new copy there.

    A copy whose bytes do not hash to the endorsed sha512 is deleted and the command fails.
    OpenNebula sites fetch the image themselves from a URL (the list's hv:uri or --from URL);
    skyctl hashes the same URL and records that hash, as OpenNebula keeps none.
    """
    from skyctl.cli.runtime import open_sky
    from skyctl.ops.replicate import replicate as run

    with open_sky() as sky, _Bar(f"{name} -> {to}") as bar:
        info = run(sky, name, to, source=from_, progress=bar)
    if output is OutputFormat.table and info["status"] == "present":
        term().info(f"{to} already holds a verified copy of {name} ({info['id']})")
    term().emit(info, output, table=lambda d: term().table(
        ["IMAGE", "SITE", "ID", "NAME", "SOURCE", "BYTES", "STATUS"],
        [(d["image"], d["site"], d["id"], d["name"], d["source"] or "-", d["bytes"], d["status"])]))
