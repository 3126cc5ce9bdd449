"""Kinguin eCommerce API (docs/external-apis.md, Part 1): the typed client (`client`), its
models and classified errors. Transport, typed errors and retries only: how a purchase is
kept exactly-once is `bitloot.fulfillment.purchase`."""
