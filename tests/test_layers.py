"""The package's layers hold: import-linter's contracts (pyproject.toml), and the rule it
cannot express, that a domain reaches another domain only through that domain's service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = (
    "admin",
    "payments",
    "fulfillment",
    "delivery",
    "orders",
    "keypage",
    "catalog",
    "inbox",
    "recovery",
    "webhooks",
)


def test_import_linter_contracts_are_kept() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_domain_reaches_another_only_through_its_service() -> None:
    graph = grimp.build_graph("bitloot")
    wrong = []
    for importer_domain in DOMAINS:
        for domain in DOMAINS:
            if domain == importer_domain:
                continue
            for link in graph.find_matching_direct_imports(
                import_expression=f"bitloot.{importer_domain}.** -> bitloot.{domain}.**"
            ):
                if link["imported"] != f"bitloot.{domain}.service":
                    wrong.append(f"{link['importer']} -> {link['imported']}")
    assert wrong == []


def test_the_service_code_never_imports_the_tools() -> None:
    graph = grimp.build_graph("bitloot")
    tools = {"bitloot.sim", "bitloot.demo", "bitloot.bench"}
    product = {m for m in graph.modules if not any(m.startswith(t) for t in tools)}
    offending = [
        f"{importer} -> {imported}"
        for importer in sorted(product)
        for imported in graph.find_modules_directly_imported_by(importer)
        if any(imported == t or imported.startswith(t + ".") for t in tools)
    ]
    assert offending == []
