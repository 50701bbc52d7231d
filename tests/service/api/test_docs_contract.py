"""docs/api.md is true to the code: its route tables are exactly the routes the app serves (with the
statuses the OpenAPI document gives each), and its command table is exactly the `lrrt` commands.

So a route or command added without a line in docs/api.md, or one removed while its line stays, fails here.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import fastapi.routing
from fastapi import FastAPI

from service.cli import app as cli

DOC = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text()
#: A route row: | `METHOD` | `/path` | statuses | what it does |
ROUTE_ROW = re.compile(r"^\| `([A-Z]+)` \| `(/[^`]*)` \| ([^|]*) \|", re.M)
IN_OPENAPI = "Routes"
OUTSIDE_OPENAPI = "Routes outside the OpenAPI document"

Route = tuple[str, str]


def section(heading: str) -> str:
    """The text under `## heading`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", DOC, flags=re.M | re.S)
    assert match, f"docs/api.md has no '## {heading}' section"
    return match[1]


def documented_routes(heading: str) -> dict[Route, set[str]]:
    """{(method, path): the statuses its row lists} for the route table under `heading`."""
    return {(method, path): set(re.findall(r"\b\d{3}\b", statuses))
            for method, path, statuses in ROUTE_ROW.findall(section(heading))}


def openapi_routes(app: FastAPI) -> dict[Route, set[str]]:
    return {(method.upper(), path): set(operation["responses"])
            for path, operations in app.openapi()["paths"].items() for method, operation in operations.items()}


def served_routes(app: FastAPI) -> set[Route]:
    """Every (method, path) the app answers, in the OpenAPI document or not. HEAD is left out: Starlette adds
    it to every GET route. Newer FastAPI keeps included routers as branches of `app.routes`, which
    `iter_route_contexts` flattens; older ones list the routes flat."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", iter)
    return {(method, re.sub(r":\w+}", "}", route.path))  # /dashboard/{path:path} -> /dashboard/{path}
            for route in flatten(app.routes) for method in (route.methods or ()) if method != "HEAD"}


def differences(documented: set[Route], actual: set[Route]) -> str:
    return f"undocumented: {sorted(actual - documented)}; documented but not served: {sorted(documented - actual)}"


def test_route_table_is_the_openapi_document(app: FastAPI) -> None:
    documented, actual = documented_routes(IN_OPENAPI), openapi_routes(app)
    assert documented.keys() == actual.keys(), "docs/api.md, Routes: " + differences(set(documented), set(actual))


def test_each_route_lists_the_statuses_it_documents_in_openapi(app: FastAPI) -> None:
    actual = openapi_routes(app)
    wrong = {route: (statuses, actual[route]) for route, statuses in documented_routes(IN_OPENAPI).items()
             if route in actual and statuses != actual[route]}
    assert not wrong, f"docs/api.md, Routes: (documented, in OpenAPI) statuses differ: {wrong}"


def test_every_served_route_is_documented(app: FastAPI) -> None:
    in_doc, outside = documented_routes(IN_OPENAPI), documented_routes(OUTSIDE_OPENAPI)
    assert not in_doc.keys() & outside.keys(), "a route is in both route tables of docs/api.md"
    documented = set(in_doc) | set(outside)
    assert documented == served_routes(app), "docs/api.md: " + differences(documented, served_routes(app))


def test_openapi_version_is_the_package_version(app: FastAPI) -> None:
    assert app.openapi()["info"]["version"] == version("lrrt")


def test_command_table_is_the_cli() -> None:
    documented = set(re.findall(r"^\| `lrrt ([a-z-]+)\b", section("Command line"), flags=re.M))
    commands = {command.name or command.callback.__name__.replace("_", "-") for command in cli.registered_commands}
    commands |= {group.name for group in cli.registered_groups if group.name}
    assert documented == commands, (f"docs/api.md, Command line: undocumented {sorted(commands - documented)}, "
                                    f"documented but absent {sorted(documented - commands)}")
