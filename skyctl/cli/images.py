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
