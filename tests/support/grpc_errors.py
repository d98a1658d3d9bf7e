"""Reading google.rpc details off a failed call, as a client would."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    found: dict[str, object] = {}
    for packed in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RequestInfo,
            error_details_pb2.RetryInfo,
            error_details_pb2.PreconditionFailure,
        ):
            if packed.Is(cls.DESCRIPTOR):
                message = cls()
                packed.Unpack(message)
                assert cls.__name__ not in found, f"two {cls.__name__} details"
                found[cls.__name__] = message
    return found


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    info = details(error).get("ErrorInfo")
    assert isinstance(info, error_details_pb2.ErrorInfo), "no ErrorInfo"
    return info


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    bad = details(error).get("BadRequest")
    assert isinstance(bad, error_details_pb2.BadRequest), "no BadRequest"
    return {v.field: v.description for v in bad.field_violations}


def retry_delay_seconds(error: grpc.aio.AioRpcError) -> float:
    retry = details(error).get("RetryInfo")
    assert isinstance(retry, error_details_pb2.RetryInfo), "no RetryInfo"
    return retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9


def precondition_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str, str]]:
    """The PreconditionFailure violations as (type, subject, description)."""
    failure = details(error).get("PreconditionFailure")
    assert isinstance(failure, error_details_pb2.PreconditionFailure), "no PreconditionFailure"
    return [(v.type, v.subject, v.description) for v in failure.violations]
