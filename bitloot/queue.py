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

from collections.abc import Iterable

import procrastinate
import psycopg
from procrastinate.connector import LISTEN_TIMEOUT, Notify
from psycopg import sql

# Modules whose tasks the worker must know; they import `queue_app` and decorate tasks.
TASK_MODULES = [
    "bitloot.fulfillment.tasks",
    "bitloot.fulfillment.returns",
    "bitloot.payments.tasks",
    "bitloot.delivery.tasks",
    "bitloot.catalog.tasks",
    "bitloot.queue_maintenance",
    "bitloot.webhooks.tasks",
]


class QueueConnector(procrastinate.PsycopgConnector):
    """procrastinate's psycopg connector, whose LISTEN connection may go to another URL
    than its pool (`listen_on`): behind a transaction pooler, the pool's connections are
    shared per transaction, and a LISTEN there would be heard by whichever client gets
    that server connection next. Everything else is procrastinate's own."""

    listen_conninfo: str | None = None

    async def listen_notify(self, on_notification: Notify, channels: Iterable[str]) -> None:
        """LISTEN on `listen_conninfo` (a real session) when set, else as procrastinate
        does (a connection of its own, built like the pool's)."""
        if self.listen_conninfo is None:
            await super().listen_notify(on_notification, channels)
            return
        while True:
            async with await psycopg.AsyncConnection.connect(
                self.listen_conninfo, autocommit=True
            ) as conn:
                for channel in channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                try:
                    while True:
                        async for note in conn.notifies(timeout=LISTEN_TIMEOUT):
                            await on_notification(channel=note.channel, payload=note.payload)
                        await conn.execute("SELECT 1")  # finds a dead connection
                except psycopg.OperationalError:
                    continue  # the connection broke: listen again on a new one


queue_connector = QueueConnector()
queue_app = procrastinate.App(connector=queue_connector, import_paths=TASK_MODULES)


def listen_on(conninfo: str | None) -> None:
    """Have this process's worker LISTEN on `conninfo` (None: on the pool's database)."""
    queue_connector.listen_conninfo = conninfo


# Queues, so that operators can run separate workers for purchases and for email.
FULFILLMENT_QUEUE = "fulfillment"
EMAIL_QUEUE = "email"
MAINTENANCE_QUEUE = "maintenance"
# Outbound webhooks to storefronts; its jobs are queued by the database itself (a trigger
# on orders, migration 0019), so this name is also written there.
WEBHOOKS_QUEUE = "webhooks"
