"""`bitloot bench`: benchmarks measured against a baseline in the same run.

Each subcommand is a module with `register(subparsers)`, listed in
`bitloot.bench.commands.SUBCOMMANDS`; see that module.
"""
