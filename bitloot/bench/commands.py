"""`bitloot bench SUBCOMMAND`: the subcommands are separate modules, registered here.

Add one by writing `bitloot/bench/<name>.py` with `register(sub)` (it adds its parser with
`add_common_arguments` and sets `handler`) and listing `"bitloot.bench.<name>:register"` in
`SUBCOMMANDS`. Modules are imported only when `bitloot` builds its parser.
"""

from __future__ import annotations

import argparse
import importlib

SUBCOMMANDS = [
    "bitloot.bench.ipn:register",
    "bitloot.bench.pipeline:register",
    "bitloot.bench.scale:register",
    "bitloot.bench.chaos:register",
]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bitloot bench` and its subcommands."""
    bench = sub.add_parser(
        "bench",
        help="benchmarks against a same-run baseline (loopback, temporary database)",
        description=(
            "Each benchmark starts its own embedded PostgreSQL in a temporary directory, "
            "measures BitLoot and a baseline in the same run, prints a table, and with "
            "--json one JSON object on the last line of stdout. Progress goes to stderr."
        ),
    )
    bsub = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    for path in SUBCOMMANDS:
        module, _, name = path.partition(":")
        getattr(importlib.import_module(module), name)(bsub)
