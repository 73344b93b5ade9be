"""CLI sub-commands. Each module defines ``register(app: typer.Typer) -> None``;
``apps.cli`` discovers every module in this package automatically."""
