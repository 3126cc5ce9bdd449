"""The delivery email: an outbox row per email, a task that sends it once, and the transports.

The email carries a link to the key page (with the order token in the URL fragment), never a
key. `tasks.queue_delivery_email` is what fulfillment calls inside its transaction.
"""
