"""Property-based API testing with schemathesis against the served OpenAPI document.

Every operation is called with generated parameters (a bounded number of examples, so this runs in
well under a minute) on a real DuckDB file holding spans, findings and summaries. Checks: no 5xx,
status codes and bodies match the documented responses; schema-invalid input is refused with 4xx (including the one error body).
"""

from __future__ import annotations

import pytest
import schemathesis
from api_data import populate
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from tracehound.api.app import create_app
from tracehound.collector.store import open_database

from tracehound.settings import ServerSettings


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    con = open_database(tmp_path_factory.mktemp("schemathesis") / "th.duckdb")
    populate(con, traces_per_route=8)
    yield create_app(con, ServerSettings())
    con.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    # A schema cannot say "a cursor this API made" or "since before until": those schema-valid
    # values get a documented 400, so the positive-data check is the one check left out.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
