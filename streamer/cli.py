"""Subcommands of the real-time side: stream, ports."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    pass
