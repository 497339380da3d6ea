"""The Admin API against its own OpenAPI document (``/openapi.json``), with schemathesis: the
document is what the running gateway serves, requests are generated from it (valid and
invalid bodies, ids, If-Match headers) and every answer must be a documented status with a body
that matches the document, and never a 500. Kept to a few examples per operation so the run
stays well under a minute."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.admin.support import KEY, AdminGateway, admin_gateway

EXAMPLES = 8
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminGateway]:
    with admin_gateway(tmp_path_factory.mktemp("openapi"), workers=1) as gateway:
        yield gateway



def test_the_document_is_openapi_3_1_made_from_the_config_schema(running: AdminGateway) -> None:
    document = running.client.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    route = document["components"]["schemas"]["Route"]
    assert route["additionalProperties"] is False
    assert "upstream_id" in route["properties"] and "id" in route["required"]
    assert "id" not in document["components"]["schemas"]["RouteBody"].get("required", [])
    assert "/apisix/admin/routes/{name}" in document["paths"]
    assert httpx.get(f"{running.url}/openapi.json").status_code == 401  # behind the key like the rest


def test_every_answer_matches_the_document(running: AdminGateway) -> None:
    # schemathesis' pytest plugin does not run under pytest 9 yet: each operation's strategy is
    # driven with hypothesis here instead, which is what the plugin does.
    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json", headers={"X-API-KEY": KEY})
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"X-API-KEY": KEY}, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # every operation is run; the failures are reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert running.version() > 1  # some generated writes were valid, applied and answered 2xx


def test_the_file_is_still_valid_after_the_run(running: AdminGateway, tmp_path: Path) -> None:
    import subprocess
    import sys
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(running.path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
