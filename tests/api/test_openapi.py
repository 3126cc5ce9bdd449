"""`GET /openapi.json` against the live in-process API: a valid OpenAPI 3.1 document that
names exactly the routes the server has, and whose schemas fit what the server answers."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from harness import Served, bare_order
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bitloot.auth.order_tokens import mint_order_token
from bitloot.auth.tokens import mint_user_token
from bitloot.openapi import build_document, openapi_document
from bitloot.web import contract
from bitloot.web.context import RESOURCES

PRODUCT = "5c9b5f6b2539a4e8f172916a"
DOC_URI = "urn:bitloot:openapi"
# Served but deliberately not API: the key page's assets and the local object store's
# signed URLs (file storage only; clients receive those URLs whole from download-link).
NOT_API = ("/static/", "/objects/")

Conn = Any


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def catalog(conn: Conn) -> None:
    await conn.execute(
        "INSERT INTO products (product_id, name, price, currency, max_cost)"
        " VALUES (%s, 'Game', 14.99, 'eur', 12)",
        (PRODUCT,),
    )


async def fetch_document(http: aiohttp.ClientSession, api: Served) -> dict[str, Any]:
    async with http.get(f"{api.url}/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        document: dict[str, Any] = await resp.json()
    return document


def served_routes(api: Served) -> set[tuple[str, str]]:
    """(method, path template) of every route the app has, HEAD duplicates left out."""
    found = set()
    for route in api.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        found.add((route.method, route.resource.canonical))
    return found


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "options", "head", "trace")
    }


class Checker:
    """Validates live answers against the document's response schemas."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)

    def schema_for(self, method: str, path: str, status: int, media_type: str) -> Any:
        operation = self.document["paths"][path][method.lower()]
        response = operation["responses"][str(status)]
        return response, response["content"][media_type]["schema"]

    def check(
        self, method: str, path: str, resp: aiohttp.ClientResponse, body: Any
    ) -> dict[str, Any]:
        response, schema = self.schema_for(method, path, resp.status, resp.content_type)
        if "$ref" in schema:
            schema = {"$ref": DOC_URI + schema["$ref"]}
        validator = jsonschema.Draft202012Validator(
            schema,
            registry=self.registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        validator.validate(body)
        for name, header in response.get("headers", {}).items():
            if "$ref" in header:
                header = self.document["components"]["headers"][header["$ref"].rsplit("/", 1)[1]]
            if header.get("required"):
                assert name in resp.headers, (method, path, resp.status, name)
        return dict(response)


@dataclass
class Client:
    """Calls the live API and checks each answer against the document."""

    http: aiohttp.ClientSession
    api: Served
    checker: Checker

    async def call(
        self, method: str, template: str, *, token: str | None = None, json: Any = None, **path: str
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = self.api.url + template.format(**path)
        async with self.http.request(method, url, headers=headers, json=json) as resp:
            body = await resp.json(content_type=None)
            self.checker.check(method, template, resp, body)
            return resp.status, body


async def test_the_document_is_valid_openapi_3_1(api: Served, http: aiohttp.ClientSession) -> None:
    document = await fetch_document(http, api)
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    for name in ("Problem", "ValidationProblem", "RetryableProblem", "CreateOrderIn"):
        assert name in document["components"]["schemas"]


async def test_the_document_names_exactly_the_served_routes(
    api: Served, http: aiohttp.ClientSession
) -> None:
    document = await fetch_document(http, api)
    served = served_routes(api)
    api_routes = {(m, p) for m, p in served if not p.startswith(NOT_API)}
    # The exclusions are real routes of this server, left out on purpose.
    assert {p for _, p in served - api_routes} == {
        "/static/keypage.js",
        "/static/keypage.css",
        "/objects/{key}",
    }
    assert documented_routes(document) == api_routes
    assert ("GET", "/metrics") not in api_routes  # metrics are not public by default


async def test_metrics_are_documented_when_they_are_served(make_settings: Any) -> None:
    from bitloot.openapi import build_document
    from bitloot.server import route_tables
    from bitloot.web.app import create_app

    settings = make_settings(metrics_public=True)
    app = create_app(settings=settings, route_tables=route_tables(settings))
    paths = build_document(app)["paths"]
    assert "get" in paths["/metrics"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]


async def test_the_document_is_built_once_per_app(api: Served, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{api.url}/openapi.json") as resp:
        first = await resp.read()
    assert openapi_document(api.app) is openapi_document(api.app)
    assert first == openapi_document(api.app)


async def test_every_operation_documents_its_errors_as_problems(
    api: Served, http: aiohttp.ClientSession
) -> None:
    document = await fetch_document(http, api)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    content = response["content"]
                    assert list(content) == ["application/problem+json"], (method, path, status)
            if any(s for s in operation["security"] if s):
                assert "401" in operation["responses"], (method, path)


async def test_live_answers_fit_their_documented_schemas(
    api: Served, http: aiohttp.ClientSession, catalog: None
) -> None:
    checker = Checker(await fetch_document(http, api))
    call = Client(http, api, checker).call
    settings = api.app[RESOURCES].settings
    customer = mint_user_token(settings, sub="user-1", email="ada@example.com")
    admin = mint_user_token(settings, sub="ops", admin=True)

    order = {"email": "ada@example.com", "items": [{"productId": PRODUCT, "qty": 1}]}
    status, created = await call("POST", "/orders", json=order, token=customer)
    assert status == 201
    order_id, order_token = created["id"], created["accessToken"]

    status, body = await call("GET", "/orders/{order_id}", token=order_token, order_id=order_id)
    assert status == 200 and body["id"] == order_id

    status, body = await call("POST", "/orders", json={"email": "nope", "items": []})
    assert status == 422 and body["errors"]

    status, body = await call("GET", "/orders")
    assert status == 401

    status, body = await call("GET", "/healthz")
    assert status == 200

    status, body = await call("GET", "/readyz")
    assert status == 200

    status, body = await call("GET", "/orders", token=customer)
    assert status == 200 and [o["id"] for o in body["items"]] == [order_id]

    for template in ("/fulfillment/{order_id}/status", "/fulfillment/{order_id}/download-link"):
        status, body = await call("GET", template, token=order_token, order_id=order_id)
        assert status in (200, 409), (template, status, body)  # 409: not fulfilled yet

    status, body = await call(
        "GET", "/orders/{order_id}", token=customer, order_id=str(uuid.uuid4())
    )
    assert status == 404

    status, body = await call("GET", "/admin/payments", token=customer)
    assert status == 403
    status, body = await call("GET", "/admin/payments", token=admin)
    assert status == 200

    timeline = "/admin/orders/{order_id}/fulfillment"
    status, body = await call("GET", timeline, token=admin, order_id=order_id)
    assert status == 200 and body["order"]["id"] == order_id

    retry = "/admin/orders/{order_id}/fulfillment/retry"
    status, body = await call("POST", retry, token=admin, order_id=order_id, json={"reason": "x"})
    assert status == 409  # only a failed fulfillment can be retried

    status, body = await call("POST", "/webhooks/nowpayments", json={"payment_id": 1})
    assert status == 401

    async with http.get(f"{api.url}/orders/{order_id}/key") as resp:
        _, schema = checker.schema_for("GET", "/orders/{order_id}/key", 200, "text/html")
        assert resp.status == 200 and resp.content_type == "text/html"
        assert schema == {"type": "string"}


async def test_a_route_without_a_contract_is_an_error() -> None:
    async def bare(_request: web.Request) -> web.Response:
        return web.Response()

    @contract.operation("Wrong", tag="t", security="none", ok=contract.Ok(200, "No param."))
    async def undeclared_parameter(_request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/bare", bare)
    with pytest.raises(ValueError, match="GET /bare"):
        build_document(app)
    app = web.Application()
    app.router.add_get("/things/{thing_id}", undeclared_parameter)
    with pytest.raises(ValueError, match="path parameters"):
        build_document(app)


async def test_the_declared_security_is_the_enforced_security(
    api: Served, http: aiohttp.ClientSession
) -> None:
    """Per documented operation, from its `security`: no credentials is a 401 unless anyone
    may call it; a bad bearer token a 401 wherever a token is read; an admin operation
    refuses any other valid token (403), a user one an order token (401); the tokens it
    names pass."""
    document = await fetch_document(http, api)
    schemes = document["components"]["securitySchemes"]
    settings = api.app[RESOURCES].settings
    customer = mint_user_token(settings, sub="user-1", email="ada@example.com")
    admin = mint_user_token(settings, sub="ops", admin=True)
    async with api.app[RESOURCES].pool.connection() as conn:
        # For an order that no route below names.
        order_token = await mint_order_token(conn, await bare_order(conn, "eve@example.com"))
    valid = {"userToken": customer, "adminToken": admin, "orderToken": order_token}
    checked = set()

    async def status(method: str, url: str, token: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with http.request(method, url, headers=headers, json={}) as resp:
            return resp.status

    for path, item in document["paths"].items():
        url = api.url + re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
        for method, op in item.items():
            alternatives = op["security"]
            named = {name for alt in alternatives for name in alt}
            bearer = {name for name in named if schemes[name]["type"] == "http"}
            anyone = not alternatives or {} in alternatives
            where = (method, path)

            got = await status(method, url)
            assert (got != 401) if anyone else (got == 401), (where, got)
            got = await status(method, url, "not-a-token")
            if bearer or anyone:  # read and refused, or never read
                assert (got == 401) == bool(bearer), (where, got)
            for name in bearer:
                assert await status(method, url, valid[name]) not in (401, 403), (where, name)
            if bearer == {"adminToken"}:
                for token in (customer, order_token):
                    assert await status(method, url, token) == 403, where
            elif bearer and "orderToken" not in bearer and not anyone:
                assert await status(method, url, order_token) == 401, where
            checked.add(
                ("or none: " if anyone and named else "") + (" / ".join(sorted(named)) or "none")
            )
    # Every kind of security was met: none, optional, any token, user, admin, webhooks.
    assert checked == {
        "none",
        "or none: userToken",
        "userToken",
        "adminToken",
        "adminToken / orderToken / userToken",
        "ipnSignature",
        "kinguinSecret",
    }
