"""Orders: the catalog, order creation (idempotent, invoiced) and the one way other domains
move an order's status (`service`)."""
