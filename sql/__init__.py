"""`bitloot._sql`: this directory, installed inside the `bitloot` package (pyproject.toml maps
it with `[tool.setuptools.package-dir]`) so that a wheel carries `migrations/*.sql`.
`bitloot.db.migrate` reads them through importlib.resources. Keep this file: it makes the
directory a regular package, which both a wheel and an editable install can import."""
