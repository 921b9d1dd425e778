"""Schema-driven fuzzing of the live server from its own OpenAPI document.

Hypothesis, through schemathesis, generates valid and invalid requests
(positive and negative modes) for every operation. No answer may be a 5xx
except the documented ones a request can ask for (504 ``deadline_exceeded``
for a ``timeout_ms`` of 1), and every answer must match the document (errors:
``application/problem+json`` bodies of the ``Problem`` schema).
``EXTD_FUZZ_EXAMPLES`` sets the examples per operation (a longer run:
``bench/fuzz.sh``).
"""

from __future__ import annotations

import itertools
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("EXTD_FUZZ_EXAMPLES", "20"))
ASKED_FOR = {(504, "deadline_exceeded")}


def no_unasked_server_error(ctx, response, case) -> bool | None:
    """Like schemathesis' ``not_a_server_error``, but a 504 for a deadline the request
    itself set is the documented answer, not a failure."""
    if response.status_code >= 500:
        body = response.json() if "json" in response.headers.get("content-type", [""])[0] else {}
        if (response.status_code, body.get("code")) in ASKED_FOR:
            return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_unasked_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_generated_requests_get_documented_answers(server):
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 6
    for operation, mode in itertools.product(operations, GenerationMode):
        if mode is GenerationMode.NEGATIVE and not (operation.query or operation.body):
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            case.call_and_validate(checks=CHECKS)

        fuzz()
