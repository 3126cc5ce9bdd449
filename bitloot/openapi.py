"""`GET /openapi.json`: the OpenAPI 3.1 document of the API, assembled from its routes.

Each routed handler carries its contract, declared next to it with
`bitloot.web.contract.operation` (summary, tag, security, parameters, body, answers); this
module only assembles them, and an API route whose handler declares none is an error. Every
schema comes from a pydantic model (`models_json_schema`, whose `$defs` become
`components.schemas`); each operation's id is its handler's name, its description the
handler's docstring. Errors are one shared `Problem` schema (RFC 9457, see
`bitloot.web.problems`), specialised for 422 (`errors`) and for 429/502 (`retryAfter`).

Not documented, because they are not API: the key page's `/static/...` assets and the
local object store's `/objects/...` signed URLs (those only exist with file storage, and
clients get them whole from download-link). HEAD is implied by every GET.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bitloot.web.app import SETTINGS
from bitloot.web.contract import (
    BEARER_SCHEMES,
    JSON,
    ApiKey,
    Contract,
    Ok,
    Param,
    contract_of,
    operation,
)
from bitloot.web.errors import PROBLEM_CONTENT_TYPE
from bitloot.web.problems import PROBLEM_MODELS, problem_model

routes = web.RouteTableDef()

OPENAPI_PATH = "/openapi.json"
OPENAPI_VERSION = "3.1.0"
# Routes that are served but are not API (see the module docstring).
UNDOCUMENTED_PREFIXES = ("/static/", "/objects/")

REF = "#/components/schemas/{model}"

HEADERS: dict[str, dict[str, Any]] = {
    "RequestId": {
        "description": "The request's id (the caller's own when it sent a sane one).",
        "required": True,
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "WwwAuthenticate": {
        "description": "The Bearer challenge (RFC 6750).",
        "required": True,
        "schema": {"type": "string"},
    },
}
_PATH_PARAM = re.compile(r"\{([^}:]+)")


@dataclass(frozen=True)
class Documented:
    """One API route: method and path template as the router has them, and its contract."""

    method: str
    path: str
    handler: Callable[..., Any]
    contract: Contract


def documented_routes(app: web.Application) -> list[Documented]:
    """The API routes `app` serves (no HEAD, no assets), each with its handler's contract;
    `ValueError` for a route whose handler declares none, or other path parameters."""
    documented = []
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None:
            continue
        path = resource.canonical
        if path.startswith(UNDOCUMENTED_PREFIXES):
            continue
        contract = contract_of(route.handler)
        if contract is None:
            raise ValueError(f"{route.method} {path}: its handler declares no @operation")
        declared = [p.name for p in contract.params if p.location == "path"]
        if sorted(declared) != sorted(_PATH_PARAM.findall(path)):
            raise ValueError(f"{route.method} {path}: path parameters declared {declared}")
        documented.append(Documented(route.method, path, route.handler, contract))
    return documented


def build_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app` (see the module docstring)."""
    documented = documented_routes(app)
    contracts = [d.contract for d in documented]
    schemas, refs = _component_schemas(contracts)
    paths: dict[str, dict[str, Any]] = {}
    for d in documented:
        paths.setdefault(d.path, {})[d.method.lower()] = _operation(d, refs)
    settings = app.get(SETTINGS)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "BitLoot API",
            "version": _version(),
            "description": (
                "Crypto-paid digital-key delivery. Errors are `application/problem+json` "
                "(RFC 9457) with `type`, `title`, `status` and `detail`."
            ),
        },
        "servers": [{"url": settings.public_url}] if settings is not None else [],
        "tags": [{"name": tag} for tag in dict.fromkeys(c.tag for c in contracts)],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {**BEARER_SCHEMES, **_api_key_schemes(contracts)},
            "headers": {**HEADERS, **_success_headers(contracts)},
        },
    }


_Key = tuple[type[BaseModel], JsonSchemaMode]


def _component_schemas(
    contracts: Iterable[Contract],
) -> tuple[dict[str, Any], dict[_Key, dict[str, Any]]]:
    """`components.schemas` for every model in `contracts`, and each model's `$ref`."""
    wanted: dict[_Key, None] = {(model, "validation"): None for model in PROBLEM_MODELS}
    for contract in contracts:
        if contract.body is not None:
            wanted[(contract.body, "validation")] = None
        if contract.ok.model is not None:
            wanted[(contract.ok.model, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF)
    by_model = {(model, mode): refs[(model, mode)] for model, mode in wanted}
    return dict(sorted(top.get("$defs", {}).items())), by_model


def _api_key_schemes(contracts: Iterable[Contract]) -> dict[str, dict[str, Any]]:
    return {
        c.security.scheme: c.security.security_scheme()
        for c in contracts
        if isinstance(c.security, ApiKey)
    }


def _header_id(name: str) -> str:
    return name.replace("-", "")


def _success_headers(contracts: Iterable[Contract]) -> dict[str, dict[str, Any]]:
    return {
        _header_id(name): {"description": text, "required": True, "schema": {"type": "string"}}
        for c in contracts
        for name, text in c.ok.headers.items()
    }


def _operation(d: Documented, refs: Mapping[_Key, dict[str, Any]]) -> dict[str, Any]:
    contract = d.contract
    doc: dict[str, Any] = {
        "operationId": d.handler.__name__,
        "summary": contract.summary,
        "tags": [contract.tag],
    }
    description = inspect.getdoc(d.handler)
    if description:
        doc["description"] = description
    params = [_parameter(p) for p in contract.params]
    if contract.query is not None:
        params.extend(_query_parameters(contract.query))
    if params:
        doc["parameters"] = params
    if contract.body is not None:
        body: dict[str, Any] = {
            "required": True,
            "content": {JSON: {"schema": refs[(contract.body, "validation")]}},
        }
        if contract.body_description:
            body["description"] = contract.body_description
        doc["requestBody"] = body
    doc["security"] = [{} if s is None else {s: []} for s in contract.accepts]
    doc["responses"] = {
        str(contract.ok.status): _success(contract.ok, refs),
        **{
            str(status): _success(dataclasses.replace(contract.ok, description=text), refs)
            for status, text in contract.ok.also.items()
        },
        **{str(status): _problem(status, text) for status, text in contract.problems.items()},
    }
    return doc


def _parameter(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.location,
        "required": p.required or p.location == "path",
        "description": p.description,
        "schema": dict(p.schema),
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One optional query parameter per field of `model`, named by its alias."""
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", ()))
    params = []
    for name, field_schema in schema["properties"].items():
        prop = dict(field_schema)
        prop.pop("title", None)
        prop.pop("description", None)  # the parameter's own
        if prop.get("default", 0) is None:
            del prop["default"]
        # Optional means "leave it out": a query string cannot carry null.
        alternatives = prop.pop("anyOf", None)
        if alternatives is not None:
            rest = [alt for alt in alternatives if alt.get("type") != "null"]
            prop.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        params.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": _field_description(model, name),
                "schema": prop,
            }
        )
    return params


def _field_description(model: type[BaseModel], alias: str) -> str:
    for name, info in model.model_fields.items():
        if alias in (name, info.alias):
            return info.description or alias
    return alias


def _header_ref(component: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{component}"}


def _header_refs(names: Iterable[str] = ()) -> dict[str, Any]:
    """`X-Request-Id` (every answer has it) and the headers `names`."""
    return {
        "X-Request-Id": _header_ref("RequestId"),
        **{name: _header_ref(_header_id(name)) for name in names},
    }


def _success(ok: Ok, refs: Mapping[_Key, dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {"description": ok.description}
    if ok.media_type is not None:
        schema = refs[(ok.model, "serialization")] if ok.model is not None else ok.schema or {}
        doc["content"] = {ok.media_type: {"schema": dict(schema)}}
    doc["headers"] = _header_refs(ok.headers)
    return doc


def _problem(status: int, description: str) -> dict[str, Any]:
    headers = _header_refs()
    if status == 401:
        headers["WWW-Authenticate"] = _header_ref("WwwAuthenticate")
    if status in (429, 502):
        headers["Retry-After"] = _header_ref("RetryAfter")
    if status == 503:
        headers["Retry-After"] = {
            "description": "Seconds to wait, when known.",
            "schema": {"type": "integer", "minimum": 0},
        }
    schema = {"$ref": REF.format(model=problem_model(status).__name__)}
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": schema}},
        "headers": headers,
    }


def _version() -> str:
    try:
        return metadata.version("bitloot")
    except metadata.PackageNotFoundError:
        return "0.0.0"


# --- serving it ---------------------------------------------------------------------------

_DOCUMENTS: weakref.WeakKeyDictionary[web.Application, bytes] = weakref.WeakKeyDictionary()


def openapi_document(app: web.Application) -> bytes:
    """The document of `app` as JSON bytes, built on first use and kept for the app's life."""
    document = _DOCUMENTS.get(app)
    if document is None:
        document = json.dumps(build_document(app), separators=(",", ":")).encode()
        _DOCUMENTS[app] = document
    return document


@routes.get(OPENAPI_PATH)
@operation(
    "This document",
    tag="operations",
    security="none",
    ok=Ok(200, "The OpenAPI 3.1 document.", schema={"type": "object"}),
)
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this server: every endpoint, schema and error."""
    return web.Response(body=openapi_document(request.app), content_type=JSON)
