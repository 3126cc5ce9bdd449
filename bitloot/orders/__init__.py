"""Orders: the catalog, order creation and the order state machine's Python side."""
