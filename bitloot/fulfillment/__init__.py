"""Fulfillment: a paid order becomes delivered keys, exactly once, whatever fails between."""
