"""The HTTP toolkit every domain's routes use, and which knows no domain: the app factory
and runner (`app`), middlewares, problem+json errors, request resources (`context`), body
and id parsing, bearer authentication (`auth`) and rate limits (`ratelimit`)."""
