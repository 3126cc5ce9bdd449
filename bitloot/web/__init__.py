"""The HTTP toolkit every domain's routes use, and which knows no domain: the app factory
and runner (`app`), middlewares, problem+json errors, request resources (`context`), body
and id parsing, bearer authentication (`auth`), rate limits (`ratelimit`), and each
handler's API contract (`contract`, with the problem models of `problems`): what the OpenAPI
document says of it, and the security it enforces."""
