"""Command-line interface: ``inverset --help``. Each feature registers its commands in a
module of its own; :func:`register` imports them onto the one typer app."""

from __future__ import annotations

import importlib

from inverset.cli.app import app, main

COMMAND_MODULES = [
    "inverset.cli.core",
    "inverset.cli.exact",
    "inverset.cli.featvis",
    "inverset.cli.sample",
    "inverset.cli.atlas",
]


def register() -> None:
    """Import every command module (each adds its commands to ``app``)."""
    for name in COMMAND_MODULES:
        importlib.import_module(name)


__all__ = ["app", "main", "register"]
