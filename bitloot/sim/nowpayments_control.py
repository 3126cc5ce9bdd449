"""The NOWPayments simulator's control API (``/sim``): pay invoices, drive payments with
faults, and inspect the IPNs sent. No API key: it is a simulator, never exposed in production.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from bitloot.sim.nowpayments_api import control_error, json_response, read_json_object
from bitloot.sim.nowpayments_ipn import DrivePlan, apply_payment_faults, drive, parse_plan
from bitloot.sim.nowpayments_state import SIM_STATE, SimPayment, SimState, payment_from_invoice

log = structlog.get_logger(__name__)


async def _control_body(request: web.Request) -> dict[str, Any]:
    if not await request.read():
        return {}
    body = await read_json_object(request)
    if body is None:
        control_error(400, "body must be a JSON object")
    return body


def _deliveries(state: SimState, drive_id: int) -> dict[str, Any]:
    task = state.drives.get(drive_id)
    return {
        "payment_id": str(drive_id),
        "done": task is not None and task.done(),
        "deliveries": [r.as_json() for r in state.ipns if r.drive_id == drive_id],
    }


def _log_drive_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("nowpayments_sim.drive_failed", exc_info=task.exception())


async def _start_drive(state: SimState, payment: SimPayment, plan: DrivePlan) -> web.Response:
    if not payment.ipn_callback_url:
        control_error(409, "the payment has no ipn_callback_url")
    running = state.drives.get(payment.payment_id)
    if running is not None and not running.done():
        control_error(409, "this payment is already being driven")
    apply_payment_faults(payment, plan.faults)
    task = asyncio.create_task(drive(state, payment.payment_id, payment, plan))
    task.add_done_callback(_log_drive_failure)
    state.drives[payment.payment_id] = task
    if plan.wait:
        await asyncio.shield(task)  # a dropped control connection must not stop the drive
    result = _deliveries(state, payment.payment_id)
    result["invoice_id"] = str(payment.invoice_id) if payment.invoice_id else None
    return json_response(result, status=201)


def _plan(state: SimState, body: dict[str, Any]) -> DrivePlan:
    try:
        return parse_plan(body, state.retry_delays_ms)
    except ValueError as exc:
        control_error(400, str(exc))


async def sim_pay_invoice(request: web.Request) -> web.Response:
    """``POST /sim/invoices/{id}/pay``: create a payment and drive it, sending IPNs."""
    state = request.app[SIM_STATE]
    raw_id = request.match_info["invoice_id"]
    inv = state.invoices.get(int(raw_id)) if raw_id.isdigit() else None
    if inv is None:
        control_error(404, "no such invoice")
    body = await _control_body(request)
    plan = _plan(state, body)
    pay_currency = body.get("pay_currency") or inv.pay_currency or "btc"
    price_currency = body.get("price_currency")
    if not isinstance(pay_currency, str) or not isinstance(price_currency, str | None):
        control_error(400, "pay_currency and price_currency must be strings")
    payment = payment_from_invoice(
        state, inv, pay_currency.lower(), price_currency.lower() if price_currency else None
    )
    return await _start_drive(state, payment, plan)


async def sim_drive_payment(request: web.Request) -> web.Response:
    """``POST /sim/payments/{id}/drive``: drive an existing payment (e.g. from /v1/payment)."""
    state = request.app[SIM_STATE]
    raw_id = request.match_info["payment_id"]
    payment = state.payments.get(int(raw_id)) if raw_id.isdigit() else None
    if payment is None:
        control_error(404, "no such payment")
    plan = _plan(state, await _control_body(request))
    return await _start_drive(state, payment, plan)


async def sim_deliveries(request: web.Request) -> web.Response:
    """``GET /sim/payments/{id}/deliveries``: the IPNs of one drive and whether it is done."""
    state = request.app[SIM_STATE]
    raw_id = request.match_info["payment_id"]
    if not raw_id.isdigit() or int(raw_id) not in state.drives:
        control_error(404, "no drive for this payment")
    return json_response(_deliveries(state, int(raw_id)))


async def sim_ipns(request: web.Request) -> web.Response:
    """``GET /sim/ipns``: every IPN sent, oldest first, with its attempts."""
    state = request.app[SIM_STATE]
    return json_response({"items": [r.as_json() for r in state.ipns]})


async def sim_reset(request: web.Request) -> web.Response:
    """``POST /sim/reset``: stop every drive and forget all invoices, payments and IPNs."""
    await request.app[SIM_STATE].reset()
    return web.Response(status=204)
