"""The job queue: one procrastinate App, its tasks registered from the domain modules.

The App is created at import with an unopened connector; each process opens it on its own
pool (`await queue_app.open_async(pool)`). Work that must follow a status change is deferred
on the caller's connection, inside the caller's transaction:

    async with conn.transaction():
        ...status change...
        await fulfillment.service.defer_fulfillment(conn, order_id)  # configure_task by name

so the job exists exactly when the status change was committed.
"""

from __future__ import annotations

import procrastinate

# Modules whose tasks the worker must know; they import `queue_app` and decorate tasks.
TASK_MODULES = [
    "bitloot.fulfillment.tasks",
    "bitloot.fulfillment.returns",
    "bitloot.payments.tasks",
    "bitloot.delivery.tasks",
    "bitloot.catalog.tasks",
    "bitloot.queue_maintenance",
]

queue_app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),
    import_paths=TASK_MODULES,
)

# Queues, so that operators can run separate workers for purchases and for email.
FULFILLMENT_QUEUE = "fulfillment"
EMAIL_QUEUE = "email"
MAINTENANCE_QUEUE = "maintenance"
