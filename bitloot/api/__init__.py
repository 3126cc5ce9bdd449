"""The HTTP layer shared by every domain: the app factory (`app`), the middlewares
(`middleware`) and the problem+json errors (`errors`). Domain routes live in their domains."""
