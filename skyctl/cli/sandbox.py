"""`skyctl sandbox ...` (placeholder; the sandbox work fills it)."""
import typer

app = typer.Typer(help="The embedded local federation: up, down, status, fault.", no_args_is_help=True)
