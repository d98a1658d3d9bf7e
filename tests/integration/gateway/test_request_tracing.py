"""One request followed from Envoy's access log to the service's JSON log line."""

from __future__ import annotations

import io
import json
import logging
import uuid

from support.gateway_harness import Gateway
from support.identity_harness import IdentityHarness

from cardinsa_foundation.logging import configure_logging


async def test_one_request_id_in_the_gateway_and_the_service_log(
    gateway: Gateway, identity: IdentityHarness
) -> None:
    user = await identity.create_user(identity.admin_a)
    token = await identity.token(identity.admin_a)
    stream = io.StringIO()
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    configure_logging("INFO", True, "identity", stream=stream)
    try:
        request_id = f"trace-{uuid.uuid4()}"
        reply = await gateway.request(
            "GET", f"/v1/users/{user.user_id}", token=token, headers={"x-request-id": request_id}
        )
        assert reply.status == 200
    finally:
        # Put back whatever the test session had (pytest's own handlers).
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)

    edge = await gateway.log_line(request_id)
    assert edge["grpc_method"] == "/cardinsa.identity.v1.UserService/GetUser"
    assert edge["status"] == 200

    service_lines = [
        json.loads(line) for line in stream.getvalue().splitlines() if request_id in line
    ]
    access = [line for line in service_lines if line.get("logger") == "cardinsa.access"]
    assert len(access) == 1, service_lines
    line = access[0]
    assert line["request_id"] == request_id
    assert line["method"] == "/cardinsa.identity.v1.UserService/GetUser"
    assert line["code"] == "OK"
    assert line["principal"] == identity.admin_a.user_id
    assert line["company_id"] == identity.admin_a.company_id
    assert line["duration_ms"] >= 0
    assert token not in stream.getvalue()
