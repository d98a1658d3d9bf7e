"""The whole API contract, read from the descriptor set the gateway also uses.

Every RPC of every Cardinsa service must declare who may call it and how it is
reached over REST. A method without either is a hole (default deny makes it
unusable; a missing HTTP rule makes it unreachable through the gateway).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from cardinsa.common.v1 import common_pb2

DESCRIPTOR_SET = Path(__file__).resolve().parents[2] / "gen" / "descriptor.binpb"


def _methods() -> list[tuple[str, descriptor_pb2.MethodDescriptorProto]]:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    found = []
    for file in fds.file:
        if not file.package.startswith("cardinsa."):
            continue
        for service in file.service:
            for method in service.method:
                found.append((f"{file.package}.{service.name}/{method.name}", method))
    return found


METHODS = _methods()


def test_the_contract_has_services() -> None:
    assert len(METHODS) > 10
    assert any(name.startswith("cardinsa.identity.v1.") for name, _ in METHODS)


def test_descriptor_set_carries_error_details_for_the_gateway() -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    names = {f.name for f in fds.file}
    assert "google/rpc/error_details.proto" in names
    assert "google/api/annotations.proto" in names


@pytest.mark.parametrize(("name", "method"), METHODS, ids=[n for n, _ in METHODS])
def test_every_rpc_declares_authorization_and_http(
    name: str, method: descriptor_pb2.MethodDescriptorProto
) -> None:
    options = method.options
    assert options.HasExtension(common_pb2.authorization), f"{name} declares no authorization rule"
    rule = options.Extensions[common_pb2.authorization]
    which = rule.WhichOneof("rule")
    assert which in {"permission", "public", "authenticated"}, name
    if which == "permission":
        resource, _, action = rule.permission.partition(".")
        assert resource and action, f"{name}: permission must be <resource>.<action>"
    else:
        assert getattr(rule, which) is True, name
    assert options.HasExtension(annotations_pb2.http), f"{name} has no google.api.http rule"
    http: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
    pattern = http.WhichOneof("pattern")
    path = getattr(http, pattern) if pattern and pattern != "custom" else http.custom.path
    assert path.startswith(("/v1/", "/.well-known/")), (
        f"{name}: REST path {path!r} is not under /v1/"
    )


@pytest.mark.parametrize(("name", "method"), METHODS, ids=[n for n, _ in METHODS])
def test_raw_responses_name_their_media_type(
    name: str, method: descriptor_pb2.MethodDescriptorProto
) -> None:
    """A method returning google.api.HttpBody (raw bytes, not JSON) says which
    media type it returns, and only such a method does: the OpenAPI description
    documents its 200 response with it."""
    raw = method.output_type == ".google.api.HttpBody"
    declared = method.options.HasExtension(common_pb2.response_content_type)
    assert raw == declared, f"{name}: HttpBody={raw}, response_content_type={declared}"
    if declared:
        media_type = method.options.Extensions[common_pb2.response_content_type]
        assert "/" in media_type and media_type != "application/json", (name, media_type)
