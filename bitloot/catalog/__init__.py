"""The catalog domain: what Kinguin says about the products we sell (stock, cheapest price),
and whether an order may be sold on it."""
