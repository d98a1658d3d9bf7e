"""The cross-tenant matrix, generic over the service descriptors.

For every RPC that needs a token, a caller of company A sends the request twice:
once with company B's ids in every id field (``user_id``, ``user.id``,
``role_binding.user_id``, ``company_id`` …) and once with random ids. The two
answers must be the same (code and ErrorInfo reason): another tenant's id is
indistinguishable from one that does not exist. For list methods, no returned
item may belong to B. Nothing here is written per method: adding an RPC to a
proto adds it to the matrix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from cardinsa.common.v1 import common_pb2
from support.request_fuzz import SESSION_ENDING

# Request fields that never hold an id, even though their names end in "_id".
NOT_IDS = frozenset({"request_id"})


@dataclass
class Outcome:
    method: str
    foreign: tuple[str, str]
    random: tuple[str, str]
    leaked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.foreign == self.random and not self.leaked


def _rule(method: Any) -> str:
    options = method.GetOptions()
    extension: Any = common_pb2.authorization
    if not options.HasExtension(extension):
        return "denied"
    return str(options.Extensions[extension].WhichOneof("rule"))


def tenant_methods(services: Iterable[ServiceDescriptor]) -> list[tuple[ServiceDescriptor, Any]]:
    """Every method that needs a token (public ones carry no tenant data), but
    Logout (it takes no id, and it would end the caller's token the matrix goes
    on sending) and streams (called unary here): see request_fuzz.SESSION_ENDING."""
    return [
        (s, m)
        for s in services
        for m in s.methods
        if _rule(m) in ("permission", "authenticated")
        and m.full_name not in SESSION_ENDING
        and not (m.client_streaming or m.server_streaming)
    ]


def _id_key(path: list[str], name: str) -> str:
    # "user.id" -> "user_id"; "role_binding.user_id" -> "user_id"; "user_id" -> "user_id"
    if name == "id" and path:
        return f"{path[-1]}_id"
    return name


def fill_ids(
    message: Any, ids: Mapping[str, str], *, random_ids: bool, path: list[str] | None = None
) -> list[str]:
    """Set every id field of ``message`` (recursively) from ``ids``; returns the keys used.

    With ``random_ids`` every id gets a fresh random UUID instead (a nonexistent id).
    """
    path = path or []
    used: list[str] = []
    descriptor: Descriptor = message.DESCRIPTOR
    for fd in descriptor.fields:
        if fd.is_repeated:
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if fd.message_type.full_name.startswith("cardinsa."):
                used += fill_ids(
                    getattr(message, fd.name), ids, random_ids=random_ids, path=[*path, fd.name]
                )
            continue
        if fd.type != FieldDescriptor.TYPE_STRING or fd.name in NOT_IDS:
            continue
        if not (fd.name == "id" or fd.name.endswith("_id")):
            continue
        key = _id_key(path, fd.name)
        if key not in ids:
            continue
        setattr(message, fd.name, str(uuid.uuid4()) if random_ids else ids[key])
        used.append(key)
    return used


def _answer(error: grpc.aio.AioRpcError | None) -> tuple[str, str]:
    if error is None:
        return ("OK", "")
    reason = ""
    status = rpc_status.from_call(error)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
    return (error.code().name, reason)


def _leaks(response: Any, foreign_company: str, foreign_ids: set[str]) -> list[str]:
    found: list[str] = []
    for fd in response.DESCRIPTOR.fields:
        if not fd.is_repeated or fd.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        for item in getattr(response, fd.name):
            names = {f.name for f in item.DESCRIPTOR.fields}
            if "company_id" in names and item.company_id == foreign_company:
                found.append(f"{fd.name}: item of company B")
            if "id" in names and item.id in foreign_ids:
                found.append(f"{fd.name}: B's {item.id}")
    return found


async def _call(
    channel: grpc.aio.Channel, service: ServiceDescriptor, method: Any, request: Any, metadata: Any
) -> tuple[Any, grpc.aio.AioRpcError | None]:
    response_cls = message_factory.GetMessageClass(method.output_type)
    stub = channel.unary_unary(
        f"/{service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )
    try:
        return await stub(request, metadata=metadata, timeout=10), None
    except grpc.aio.AioRpcError as error:
        return None, error


async def run_matrix(
    channel: grpc.aio.Channel,
    services: Iterable[ServiceDescriptor],
    *,
    caller: Any,
    foreign_ids: Mapping[str, str],
    foreign_company: str,
) -> list[Outcome]:
    """Call every tenant method as ``caller`` (metadata of company A's admin)."""
    outcomes: list[Outcome] = []
    all_foreign = set(foreign_ids.values())
    for service, method in tenant_methods(services):
        request_cls = message_factory.GetMessageClass(method.input_type)
        foreign_request, random_request = request_cls(), request_cls()
        used = fill_ids(foreign_request, foreign_ids, random_ids=False)
        fill_ids(random_request, foreign_ids, random_ids=True)
        name = f"{service.full_name}/{method.name}"
        foreign_response, foreign_error = await _call(
            channel, service, method, foreign_request, caller
        )
        leaked = (
            _leaks(foreign_response, foreign_company, all_foreign)
            if foreign_response is not None
            else []
        )
        if used:
            _, random_error = await _call(channel, service, method, random_request, caller)
            random_answer = _answer(random_error)
        else:
            # No id to swap (a list, a create): the answer must simply not leak.
            random_answer = _answer(foreign_error)
        outcomes.append(Outcome(name, _answer(foreign_error), random_answer, leaked))
    return outcomes


def report(outcomes: list[Outcome]) -> str:
    bad = [o for o in outcomes if not o.ok]
    lines = [
        f"{o.method}: B's ids -> {o.foreign}, random ids -> {o.random}, leaks {o.leaked}"
        for o in bad
    ]
    return "\n".join(lines)
