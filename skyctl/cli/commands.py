"""Which commands exist. One module per command group; all light at import."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from skyctl.cli import access, context, groups, images, launch, lifecycle, nodes, sandbox, simulate, slurm, ssh

    app.command()(nodes.sites)
    app.command()(launch.launch)
    app.command()(launch.plan)
    app.command()(nodes.ps)
    app.command()(nodes.show)
    app.command()(nodes.delete)
    app.command()(lifecycle.stop)
    app.command()(lifecycle.start)
    app.command()(lifecycle.reboot)
    app.command()(lifecycle.logs)
    ssh.register(app)  # ssh, exec, cp, wait (they keep the words after -- for the node)
    access.register(app)  # ssh-config, inventory
    app.command()(groups.scale)
    app.command()(groups.reconcile)
    groups.burst_app.command("simulate")(simulate.simulate)
    app.add_typer(groups.burst_app, name="burst")
    app.add_typer(context.app, name="context")
    app.add_typer(images.app, name="image")
    app.add_typer(sandbox.app, name="sandbox")
    app.add_typer(slurm.app, name="slurm")
