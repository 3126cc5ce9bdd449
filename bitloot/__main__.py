"""`python -m bitloot` is the `bitloot` command."""

from bitloot.cli import main

raise SystemExit(main())
