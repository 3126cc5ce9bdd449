"""Lost links: `POST /orders/recover` emails an address fresh links to its orders.

`routes` answers every request alike (no enumeration), `service` holds the rules, and
`repository` the one statement that records a request and what it found.
"""
