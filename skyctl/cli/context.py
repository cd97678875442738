"""`skyctl context ...` (placeholder; the contextualisation work fills it)."""
import typer

app = typer.Typer(help="Context profiles: list, show, render, validate.", no_args_is_help=True)
