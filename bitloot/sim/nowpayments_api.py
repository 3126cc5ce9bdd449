"""The NOWPayments simulator's API (``/v1``) and hosted invoice page (docs 2.2 to 2.5, 2.9).

Anything not backed by the docs is marked "(inferred)".
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn

from aiohttp import web

from bitloot.nowpayments.signature import dump_json
from bitloot.sim.nowpayments_state import (
    SIM_STATE,
    SimInvoice,
    SimPayment,
    SimState,
    iso_ms,
    js_number,
    new_payment,
    payment_from_invoice,
)

# (inferred) How long an unpaid payment stays valid: "7 days" per the current docs.
_PAYMENT_LIFETIME = timedelta(days=7)


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON response whose `RawNumber` values go out exactly as written."""
    # dump_json keeps RawNumber texts as written, so amounts keep their exact digits.
    return web.json_response(text=dump_json(data), status=status)


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
}


def raise_json(status: int, body: dict[str, Any]) -> NoReturn:
    """Stop the handler with this status and JSON body."""
    raise _ERRORS[status](text=dump_json(body), content_type="application/json")


def _np_error(status: int, code: str, message: str) -> NoReturn:
    """Raise an error in the NOWPayments body shape (docs 2.9)."""
    raise_json(status, {"status": False, "statusCode": status, "code": code, "message": message})


def _invalid(message: str) -> NoReturn:
    _np_error(400, "INVALID_REQUEST_PARAMS", message)


def control_error(status: int, message: str) -> NoReturn:
    """Stop a control-API handler with ``{"error": message}``."""
    raise_json(status, {"error": message})


def _require_api_key(request: web.Request) -> SimState:
    state = request.app[SIM_STATE]
    given = request.headers.get("x-api-key", "")
    # (inferred) codes and messages; the docs only say "401 or 403 for a bad API key".
    if not given:
        _np_error(401, "AUTH_REQUIRED", "Authorization header is empty")
    # surrogateescape: a non-UTF-8 header must be a 403, not an encoding error.
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), state.api_key.encode()):
        _np_error(403, "INVALID_API_KEY", "Invalid api key")
    return state


async def read_json_object(request: web.Request) -> dict[str, Any] | None:
    """The request body as a JSON object (floats as Decimal), or None if it is not one."""
    try:
        # parse_float=Decimal: a price such as 19.99 is kept exact.
        body = json.loads(await request.text(), parse_float=Decimal)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def _api_body(request: web.Request) -> dict[str, Any]:
    body = await read_json_object(request)
    if body is None:
        _invalid("Request body must be a JSON object")
    return body


def _amount(body: dict[str, Any], name: str) -> Decimal:
    value = body.get(name)
    if value is None:
        _invalid(f'"{name}" is required')
    try:
        amount = Decimal(value) if isinstance(value, int | str | Decimal) else None
    except InvalidOperation:
        amount = None
    if isinstance(value, bool) or amount is None or not amount.is_finite() or amount <= 0:
        _invalid(f'"{name}" must be a positive number')
    return amount


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            _invalid(f'"{name}" is required')
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        _invalid(f'"{name}" must be a string')
    return str(value)


def _currency(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = _text(body, name, required=required)
    return value.lower() if value is not None else None


def _url(body: dict[str, Any], name: str) -> str | None:
    value = _text(body, name)
    if value is not None and "http" not in value:
        _invalid(f'"{name}" must contain http or https')  # docs 2.3
    return value


def invoice_json(inv: SimInvoice) -> dict[str, Any]:
    """``POST /invoice`` response (docs 2.3): string id, price_amount as a string."""
    stamp = iso_ms(inv.created_at)
    return {
        "id": str(inv.id),
        "token_id": inv.token_id,
        "order_id": inv.order_id,
        "order_description": inv.order_description,
        "price_amount": str(js_number(inv.price_amount)),
        "price_currency": inv.price_currency,
        "pay_currency": inv.pay_currency,
        "ipn_callback_url": inv.ipn_callback_url,
        "invoice_url": inv.invoice_url,
        "success_url": inv.success_url,
        "cancel_url": inv.cancel_url,
        "partially_paid_url": inv.partially_paid_url,
        "payout_currency": None,
        "created_at": stamp,
        "updated_at": stamp,
        "is_fixed_rate": inv.is_fixed_rate,
        "is_fee_paid_by_user": inv.is_fee_paid_by_user,
    }


def created_payment_json(p: SimPayment) -> dict[str, Any]:
    """``POST /payment`` response (docs 2.4): payment_id a string, amounts numbers."""
    valid_until = iso_ms(p.created_at + _PAYMENT_LIFETIME)
    return {
        "payment_id": str(p.payment_id),
        "payment_status": p.payment_status,
        "pay_address": p.pay_address,
        "price_amount": js_number(p.price_amount),
        "price_currency": p.price_currency,
        "pay_amount": js_number(p.pay_amount),
        "pay_currency": p.pay_currency,
        "order_id": p.order_id,
        "order_description": p.order_description,
        "ipn_callback_url": p.ipn_callback_url,
        "created_at": iso_ms(p.created_at),
        "updated_at": iso_ms(p.updated_at),
        "purchase_id": str(p.purchase_id),
        "amount_received": js_number(p.outcome_amount),
        "payin_extra_id": None,
        "smart_contract": "",
        "network": p.pay_currency,
        "network_precision": None,
        "time_limit": None,
        "burning_percent": None,
        "expiration_estimate_date": valid_until,
        "is_fixed_rate": False,
        "is_fee_paid_by_user": False,
        "valid_until": valid_until,
        "type": "crypto2crypto",
    }


def payment_status_json(p: SimPayment) -> dict[str, Any]:
    """``GET /payment/{id}`` response (docs 2.5): payment_id and purchase_id numbers."""
    return {
        "payment_id": js_number(p.payment_id),
        "invoice_id": js_number(p.invoice_id) if p.invoice_id is not None else None,
        "payment_status": p.payment_status,
        "pay_address": p.pay_address,
        "payin_extra_id": None,
        "price_amount": js_number(p.price_amount),
        "price_currency": p.price_currency,
        "pay_amount": js_number(p.pay_amount),
        "actually_paid": js_number(p.actually_paid),
        "pay_currency": p.pay_currency,
        "order_id": p.order_id,
        "order_description": p.order_description,
        "purchase_id": js_number(p.purchase_id),
        "outcome_amount": js_number(p.outcome_amount),
        "outcome_currency": p.pay_currency,
        "payout_hash": p.payout_hash,
        "payin_hash": p.payin_hash,
        "created_at": iso_ms(p.created_at),
        "updated_at": iso_ms(p.updated_at),
        "burning_percent": None,
        "type": "crypto2crypto",
        "payment_extra_ids": [js_number(i) for i in p.payment_extra_ids or []],
    }


async def api_status(request: web.Request) -> web.Response:
    """``GET /v1/status``: no key needed."""
    return json_response({"message": "OK"})


async def api_create_invoice(request: web.Request) -> web.Response:
    """``POST /v1/invoice``: 201 with a string ``id`` and an ``invoice_url``."""
    state = _require_api_key(request)
    body = await _api_body(request)
    invoice_id = state.new_invoice_id()
    inv = SimInvoice(
        id=invoice_id,
        token_id=hashlib.sha256(f"token:{invoice_id}".encode()).hexdigest()[:9],
        price_amount=_amount(body, "price_amount"),
        price_currency=_currency(body, "price_currency", required=True) or "",
        pay_currency=_currency(body, "pay_currency"),
        order_id=_text(body, "order_id"),
        order_description=_text(body, "order_description"),
        ipn_callback_url=_url(body, "ipn_callback_url"),
        success_url=_url(body, "success_url"),
        cancel_url=_url(body, "cancel_url"),
        partially_paid_url=_url(body, "partially_paid_url"),
        is_fixed_rate=body.get("is_fixed_rate") is True,
        is_fee_paid_by_user=body.get("is_fee_paid_by_user") is True,
        invoice_url=state.invoice_url(invoice_id),
    )
    state.invoices[inv.id] = inv
    return json_response(invoice_json(inv), status=201)


async def api_create_payment(request: web.Request) -> web.Response:
    """``POST /v1/payment``: 201, ``payment_status`` ``waiting``; no IPN until driven."""
    state = _require_api_key(request)
    body = await _api_body(request)
    price_amount = _amount(body, "price_amount")
    payment = new_payment(
        state,
        price_amount=price_amount,
        price_currency=_currency(body, "price_currency", required=True) or "",
        pay_currency=_currency(body, "pay_currency", required=True) or "",
        pay_amount=_amount(body, "pay_amount") if body.get("pay_amount") is not None else None,
        invoice=None,
        order_id=_text(body, "order_id"),
        order_description=_text(body, "order_description"),
        ipn_callback_url=_url(body, "ipn_callback_url"),
    )
    return json_response(created_payment_json(payment), status=201)


async def api_create_invoice_payment(request: web.Request) -> web.Response:
    """``POST /v1/invoice-payment``: a payment for an existing invoice (``iid``)."""
    state = _require_api_key(request)
    body = await _api_body(request)
    iid = _text(body, "iid", required=True) or ""
    inv = state.invoices.get(int(iid)) if iid.isdigit() else None
    if inv is None:
        _np_error(404, "NOT_FOUND", "Invoice not found")  # (inferred) wording
    pay_currency = _currency(body, "pay_currency", required=True) or ""
    payment = payment_from_invoice(state, inv, pay_currency)
    return json_response(created_payment_json(payment), status=201)


async def api_get_payment(request: web.Request) -> web.Response:
    """``GET /v1/payment/{id}``: the current state, shaped as docs 2.5."""
    state = _require_api_key(request)
    raw_id = request.match_info["payment_id"]
    if not raw_id.isdigit():
        _invalid("Payment id must be a number")  # docs 2.5
    payment = state.payments.get(int(raw_id))
    if payment is None:
        _np_error(404, "NOT_FOUND", "Payment not found")  # (inferred) wording
    return json_response(payment_status_json(payment))


async def invoice_page(request: web.Request) -> web.Response:
    """The hosted invoice page, read-only: a GET never changes anything."""
    state = request.app[SIM_STATE]
    raw_id = request.match_info["invoice_id"]
    inv = state.invoices.get(int(raw_id)) if raw_id.isdigit() else None
    if inv is None:
        raise web.HTTPNotFound(text="<h1>Invoice not found</h1>", content_type="text/html")
    rows = "".join(
        f"<li>payment {p.payment_id}: {html.escape(p.payment_status)}, "
        f"{html.escape(str(js_number(p.actually_paid)))} of "
        f"{html.escape(str(js_number(p.pay_amount)))} {html.escape(p.pay_currency)}</li>"
        for p in state.payments.values()
        if p.invoice_id == inv.id
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>NOWPayments simulator: invoice {inv.id}</title></head><body>"
        f"<h1>Invoice {inv.id}</h1>"
        f"<p>{html.escape(inv.order_description or '')}</p>"
        f"<p>Order {html.escape(inv.order_id or '-')}: "
        f"{html.escape(str(js_number(inv.price_amount)))} "
        f"{html.escape(inv.price_currency.upper())}</p>"
        f"<ul>{rows or '<li>no payment yet</li>'}</ul>"
        "<p>This is a simulator. Pay with "
        f"<code>POST /nowpayments/sim/invoices/{inv.id}/pay</code>.</p></body></html>"
    )
    return web.Response(text=page, content_type="text/html")
