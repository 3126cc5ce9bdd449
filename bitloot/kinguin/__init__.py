"""Kinguin eCommerce (ESA) API: models, errors and the async client."""
