"""NOWPayments simulator: an aiohttp sub-application mounted at ``/nowpayments``.

The API part (``/v1/...``, `nowpayments_api`) follows docs/external-apis.md Part 2; the
control part (``/sim/...``, `nowpayments_control`, no API key) pays invoices and injects
faults; `nowpayments_ipn` builds, signs and delivers the IPNs.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from bitloot.sim import nowpayments_api as api
from bitloot.sim import nowpayments_control as control
from bitloot.sim.nowpayments_state import SIM_STATE, SimState

__all__ = ["SIM_STATE", "create_nowpayments_sim"]


async def _on_shutdown(app: web.Application) -> None:
    await app[SIM_STATE].stop_drives()


async def _on_cleanup(app: web.Application) -> None:
    await app[SIM_STATE].close()


def create_nowpayments_sim(
    *,
    api_key: str,
    ipn_secret: str,
    public_base_url: str,
    retry_delays_ms: Sequence[int] = (100, 300, 1000),
    ipn_timeout_s: float = 3.0,
) -> web.Application:
    """Build the simulator; mount it with ``app.add_subapp("/nowpayments", sub)``.

    ``public_base_url`` is where the parent app is reachable (invoice pages are linked
    under ``{public_base_url}/nowpayments/invoice/{id}``). IPNs are retried after a
    non-2xx or no answer within ``ipn_timeout_s`` (the real limit is 3000 ms), waiting
    ``retry_delays_ms`` between attempts.
    """
    if not api_key or not ipn_secret:
        # NOWPayments sends no IPN without a secret (docs 2.1); a sim without one is useless.
        raise ValueError("the NOWPayments simulator needs an API key and an IPN secret")
    app = web.Application()
    app[SIM_STATE] = SimState(
        api_key=api_key,
        ipn_secret=ipn_secret,
        public_base_url=public_base_url,
        retry_delays_ms=retry_delays_ms,
        ipn_timeout_s=ipn_timeout_s,
    )
    app.router.add_get("/v1/status", api.api_status)
    app.router.add_post("/v1/invoice", api.api_create_invoice)
    app.router.add_post("/v1/payment", api.api_create_payment)
    app.router.add_post("/v1/invoice-payment", api.api_create_invoice_payment)
    app.router.add_get("/v1/payment/{payment_id}", api.api_get_payment)
    app.router.add_get("/invoice/{invoice_id}", api.invoice_page)
    app.router.add_post("/sim/invoices/{invoice_id}/pay", control.sim_pay_invoice)
    app.router.add_post("/sim/payments/{payment_id}/drive", control.sim_drive_payment)
    app.router.add_get("/sim/payments/{payment_id}/deliveries", control.sim_deliveries)
    app.router.add_get("/sim/ipns", control.sim_ipns)
    app.router.add_post("/sim/reset", control.sim_reset)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
