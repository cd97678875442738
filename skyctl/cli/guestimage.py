"""`skyctl sandbox image build | show`: the disk image real sandbox guests boot (`up --guests qemu`).

Only typer and the light CLI modules at module level (this loads for `skyctl --help`).
"""

from typing import Annotated, Any

import typer

from skyctl.cli.options import OutputOpt
from skyctl.cli.terminal import OutputFormat, term

app = typer.Typer(help="The real guests' disk image (Debian 12 with cloud-init): build, show.",
                  no_args_is_help=True)


def ensure_image(*, force: bool = False) -> tuple[Any, bool]:
    """The image for today's inputs from the cache, built when missing (or `force`)."""
    from skyctl.paths import cache_dir
    from skyctl.sandbox.guest import image as imagemod

    t = term()
    cache = cache_dir()
    if not force:
        found = imagemod.find(cache)
        if found is not None:
            return found, False
    t.info("building the guest image (Debian 12, cloud-init; a few minutes, cached afterwards)")
    return imagemod.build(cache, force=force, say=lambda m: t.info(f"  {m}"))


def _doc(image: Any, built: bool) -> dict[str, Any]:
    manifest = image.manifest()
    inputs = manifest.get("inputs") or {}
    return {"key": image.key, "dir": str(image.dir), "built_now": built, "built": manifest.get("built"),
            "build_seconds": manifest.get("build_seconds"), "suite": inputs.get("suite"),
            "mirror": inputs.get("mirror"), "kernel": manifest.get("kernel"),
            "disk_bytes": image.disk.stat().st_size if image.disk.exists() else None}


def _table(doc: dict[str, Any]) -> Any:
    return term().table(["field", "value"], [(k, v) for k, v in doc.items()])


@app.command()
def build(
    force: Annotated[bool, typer.Option("--force", help="Build again even when a cached image fits.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Build the guest image with mmdebstrap from Debian's packages (needs root, mmdebstrap,
    e2fsprogs), or reuse the cached one built from the same inputs (mirror, packages, settings).

    The mirror is the one the host's apt uses (/etc/apt/sources.list and sources.list.d).
    """
    image, built = ensure_image(force=force)
    term().info(f"guest image {'built' if built else 'cached'}: {image.dir}")
    term().emit(_doc(image, built), output, table=_table)


@app.command()
def show(output: OutputOpt = OutputFormat.table) -> None:
    """Show the cached image for today's inputs; exits 1 when none is built."""
    from skyctl.errors import SkyError
    from skyctl.paths import cache_dir
    from skyctl.sandbox.guest import image as imagemod

    found = imagemod.find(cache_dir())
    if found is None:
        raise SkyError("no guest image is built for today's inputs", hint="skyctl sandbox image build")
    term().emit(_doc(found, False), output, table=_table)
