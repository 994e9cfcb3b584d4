"""The served OpenAPI document matches the routes the app serves, and real responses
validate against its schemas."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]

from rlmbox.daemon.app import ROUTES

from .conftest import RunningDaemon


def _schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = spec["paths"][path][method.lower()]["responses"][str(status)]
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}


def _check(spec: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    documented = spec["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, (path, method, response.status_code)
    if response.status_code != 204:
        jsonschema.validate(response.json(), _schema(spec, path, method,
                                                     response.status_code))


def test_every_route_is_documented_and_every_documented_route_is_served(
        daemon: RunningDaemon) -> None:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                      base_url="http://rlmbox") as http:
        spec = http.get("/openapi.json").json()
    served = {(method.lower(), path) for method, path, _ in ROUTES}
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert served == documented
    assert spec["openapi"].startswith("3.1")
    resource = daemon.daemon._runner.app.router.resources()  # type: ignore[union-attr]
    app_paths = {r.canonical for r in resource}
    assert app_paths == set(spec["paths"])


def test_real_responses_match_the_schemas(daemon: RunningDaemon) -> None:
    token = daemon.token("alice")
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                      base_url="http://rlmbox",
                      headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        spec = http.get("/openapi.json").json()
        jsonschema.Draft202012Validator.check_schema(
            {"$defs": spec["components"]["schemas"]})
        _check(spec, "/v1/health", "GET", http.get("/v1/health"))
        created = http.post("/v1/sessions", json={"context": "abc"})
        _check(spec, "/v1/sessions", "POST", created)
        sid = created.json()["id"]
        path = "/v1/sessions/{id}"
        _check(spec, path, "GET", http.get(f"/v1/sessions/{sid}"))
        _check(spec, "/v1/sessions", "GET", http.get("/v1/sessions"))
        for code in ("print(len(context))", "FINAL([1, {'a': None}])", "1/0"):
            _check(spec, path + "/exec", "POST",
                   http.post(f"/v1/sessions/{sid}/exec", json={"code": code}))
        _check(spec, path + "/exec", "POST", http.post(f"/v1/sessions/{sid}/exec", json={}))
        _check(spec, "/v1/audit", "GET", http.get("/v1/audit", params={"session": sid}))
        _check(spec, "/v1/audit", "GET", http.get("/v1/audit", params={"limit": "0"}))
        _check(spec, path, "DELETE", http.delete(f"/v1/sessions/{sid}"))
        _check(spec, path + "/exec", "POST",
               http.post(f"/v1/sessions/{sid}/exec", json={"code": "1"}))
        _check(spec, path, "GET", http.get("/v1/sessions/s-ffffffffffffffff"))
        _check(spec, "/v1/sessions", "POST", http.post("/v1/sessions", json={"policy": "x"}))
        _check(spec, "/v1/sessions", "GET",
               http.get("/v1/sessions", headers={"Authorization": "Bearer no"}))


def test_documented_paths_use_the_apps_parameter_names() -> None:
    from rlmbox.daemon.openapi import build_spec

    spec = build_spec("test")
    for path, ops in spec["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path
