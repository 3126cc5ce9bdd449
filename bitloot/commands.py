"""Subcommands defined outside `bitloot.cli`, as `module:register` paths imported lazily,
so `bitloot --help` does not import the whole application."""

from __future__ import annotations

REGISTRARS = [
    "bitloot.ops:register",
    "bitloot.webhook_commands:register",
    "bitloot.server:register",
    "bitloot.worker:register",
    "bitloot.sim.app:register",
    "bitloot.demo.commands:register",
    "bitloot.bench.commands:register",
]
