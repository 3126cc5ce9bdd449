"""Who is asking: user and admin JWTs from the identity provider, and BitLoot's own
order-scoped access tokens. Their use in HTTP handlers is `bitloot.web.auth`."""
