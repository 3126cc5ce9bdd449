"""Who is asking: user and admin JWTs from the identity provider, and BitLoot's own
order-scoped access tokens (`tokens`), and their use in HTTP handlers (`http`)."""
