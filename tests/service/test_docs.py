"""The API's documents: offline docs, and an OpenAPI schema that matches what the server sends."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from service.problems import ProblemCode

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"
ASSET = re.compile(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)["']""")


@pytest.mark.slow
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_render_from_local_assets(server, page):
    with server.client() as http:
        html = http.get(page).text
        assert not re.search(r"https?://", html), "the page references another host"
        assets = ASSET.findall(html)
        assert "/openapi.json" in assets
        scripts = [a for a in assets if a.endswith(".js")]
        assert scripts
        for asset in assets:
            response = http.get(asset)
            assert response.status_code == 200, asset
        assert all(len(http.get(s).content) > 100_000 for s in scripts)


@pytest.mark.slow
def test_error_bodies_are_documented_as_problem_json(server):
    with server.client() as http:
        spec = http.get("/openapi.json").json()
    detect = spec["paths"]["/v1/detect"]["post"]["responses"]
    assert {"404", "413", "415", "422", "429", "503", "504"} <= set(detect)
    for status, response in detect.items():
        media = set(response.get("content", {}))
        assert media == ({"application/json"} if status == "200" else {"application/problem+json"})
    problem = spec["components"]["schemas"]["Problem"]["properties"]
    assert {"index", "limit", "errors", "reason"} <= set(problem)
    assert set(problem["code"]["enum"]) == set(typing.get_args(ProblemCode))
    reload = spec["paths"]["/v1/admin/reload"]["post"]
    assert reload["security"] == [{"adminToken": []}]
    assert spec["components"]["securitySchemes"]["adminToken"]["scheme"] == "bearer"


def test_the_api_page_lists_every_problem_code():
    table = re.findall(r"^\| \d{3} \| (.+?) \|", API_PAGE.read_text(), flags=re.MULTILINE)
    documented = {code for row in table for code in re.findall(r"`([a-z0-9_]+)`", row)}
    assert documented == set(typing.get_args(ProblemCode))
