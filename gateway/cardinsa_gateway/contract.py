"""The API contract as the gateway sees it: read from the descriptor set alone.

Everything the gateway and the OpenAPI document derive (routes, JWT rules, the
login route, retries for reads, REST paths, schemas, descriptions) comes from
``gen/descriptor.binpb`` — the same file Envoy's transcoder loads — so the two
can never disagree. The custom options (``google.api.http``,
``cardinsa.common.v1.authorization``, ``google.api.field_behavior``) are decoded
through a descriptor pool built from the set itself; no generated Python code
is imported, so this works in the middle of ``make proto`` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# descriptor.proto field numbers used in SourceCodeInfo paths.
_FILE_MESSAGE = 4
_FILE_ENUM = 5
_FILE_SERVICE = 6
_MESSAGE_FIELD = 2
_MESSAGE_NESTED = 3
_MESSAGE_ENUM = 4
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

HTTP_VERBS = ("get", "put", "post", "delete", "patch")


class Access(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    PERMISSION = "permission"
    DENIED = "denied"  # no rule: the services refuse the method


@dataclass(frozen=True)
class HttpBinding:
    verb: str  # upper case: GET, POST, PATCH, DELETE, PUT
    path: str  # template, for example /v1/users/{user_id}
    body: str  # "" (none), "*" (whole request) or a top-level field name
    response_body: str = ""


@dataclass(frozen=True)
class Method:
    package: str
    service: str  # simple name, for example UserService
    name: str
    input_type: str  # full name without the leading dot
    output_type: str
    bindings: tuple[HttpBinding, ...]
    access: Access
    permission: str | None
    comment: str
    client_streaming: bool = False
    server_streaming: bool = False
    #: ``(cardinsa.common.v1.response_content_type)``: the media type of an
    #: HttpBody response ("" for a message response).
    response_content_type: str = ""

    @property
    def full_service(self) -> str:
        return f"{self.package}.{self.service}"

    @property
    def grpc_path(self) -> str:
        """The HTTP/2 path of the gRPC call (what routes match after transcoding)."""
        return f"/{self.full_service}/{self.name}"

    @property
    def is_read(self) -> bool:
        """Reached with GET over REST: safe and idempotent, so retries are allowed
        (not a stream: a stream is never retried)."""
        if self.client_streaming or self.server_streaming:
            return False
        return bool(self.bindings) and all(b.verb == "GET" for b in self.bindings)

    @property
    def is_public(self) -> bool:
        return self.access is Access.PUBLIC


@dataclass
class Message:
    full_name: str
    proto: descriptor_pb2.DescriptorProto
    comment: str
    field_comments: dict[str, str] = field(default_factory=dict)


@dataclass
class Enum:
    full_name: str
    proto: descriptor_pb2.EnumDescriptorProto
    comment: str
    value_comments: dict[str, str] = field(default_factory=dict)


def _clean(comment: str) -> str:
    lines = [line.strip() for line in comment.strip("\n").splitlines()]
    return "\n".join(lines).strip()


class Contract:
    """Services, methods, messages and enums of a FileDescriptorSet."""

    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.files = list(descriptor_set.file)
        self._pool = descriptor_pool.DescriptorPool()
        for file in self.files:
            self._pool.Add(file)
        self._method_options = message_factory.GetMessageClass(
            self._pool.FindMessageTypeByName("google.protobuf.MethodOptions")
        )
        self._field_options = message_factory.GetMessageClass(
            self._pool.FindMessageTypeByName("google.protobuf.FieldOptions")
        )
        self._http = self._extension("google.api.http")
        self._authorization = self._extension("cardinsa.common.v1.authorization")
        self._content_type = self._extension("cardinsa.common.v1.response_content_type")
        self._field_behavior = self._extension("google.api.field_behavior")
        self.messages: dict[str, Message] = {}
        self.enums: dict[str, Enum] = {}
        self.methods: list[Method] = []
        self.service_comments: dict[str, str] = {}
        for file in self.files:
            self._index(file)

    @classmethod
    def load(cls, path: Path) -> Contract:
        return cls(descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()))

    def _extension(self, name: str) -> Any:
        try:
            return self._pool.FindExtensionByName(name)
        except KeyError:
            return None

    # --- indexing -----------------------------------------------------------------

    def _index(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        comments = {
            tuple(location.path): _clean(location.leading_comments)
            for location in file.source_code_info.location
            if location.leading_comments
        }
        prefix = f"{file.package}." if file.package else ""

        def walk_enum(
            enum: descriptor_pb2.EnumDescriptorProto, scope: str, path: tuple[int, ...]
        ) -> None:
            full = f"{scope}{enum.name}"
            self.enums[full] = Enum(
                full,
                enum,
                comments.get(path, ""),
                {
                    value.name: comments.get((*path, _ENUM_VALUE, i), "")
                    for i, value in enumerate(enum.value)
                },
            )

        def walk_message(
            message: descriptor_pb2.DescriptorProto, scope: str, path: tuple[int, ...]
        ) -> None:
            full = f"{scope}{message.name}"
            self.messages[full] = Message(
                full,
                message,
                comments.get(path, ""),
                {
                    f.name: comments.get((*path, _MESSAGE_FIELD, i), "")
                    for i, f in enumerate(message.field)
                },
            )
            for i, nested in enumerate(message.nested_type):
                walk_message(nested, f"{full}.", (*path, _MESSAGE_NESTED, i))
            for i, enum in enumerate(message.enum_type):
                walk_enum(enum, f"{full}.", (*path, _MESSAGE_ENUM, i))

        for i, message in enumerate(file.message_type):
            walk_message(message, prefix, (_FILE_MESSAGE, i))
        for i, enum in enumerate(file.enum_type):
            walk_enum(enum, prefix, (_FILE_ENUM, i))
        for s, service in enumerate(file.service):
            self.service_comments[f"{prefix}{service.name}"] = comments.get((_FILE_SERVICE, s), "")
            for m, method in enumerate(service.method):
                self.methods.append(
                    self._method(
                        file.package,
                        service.name,
                        method,
                        comments,
                        (_FILE_SERVICE, s, _SERVICE_METHOD, m),
                    )
                )

    def _method(
        self,
        package: str,
        service: str,
        method: descriptor_pb2.MethodDescriptorProto,
        comments: dict[tuple[int, ...], str],
        path: tuple[int, ...],
    ) -> Method:
        options = self._method_options.FromString(method.options.SerializeToString())
        bindings: list[HttpBinding] = []
        if self._http is not None and options.HasExtension(self._http):
            rule = options.Extensions[self._http]
            for one in [rule, *rule.additional_bindings]:
                kind = one.WhichOneof("pattern")
                if kind in HTTP_VERBS:
                    bindings.append(
                        HttpBinding(kind.upper(), getattr(one, kind), one.body, one.response_body)
                    )
                elif kind == "custom":
                    bindings.append(
                        HttpBinding(
                            one.custom.kind.upper(), one.custom.path, one.body, one.response_body
                        )
                    )
        access, permission = Access.DENIED, None
        if self._authorization is not None and options.HasExtension(self._authorization):
            rule = options.Extensions[self._authorization]
            which = rule.WhichOneof("rule")
            if which == "public" and rule.public:
                access = Access.PUBLIC
            elif which == "authenticated" and rule.authenticated:
                access = Access.AUTHENTICATED
            elif which == "permission" and rule.permission:
                access, permission = Access.PERMISSION, rule.permission
        content_type = ""
        if self._content_type is not None and options.HasExtension(self._content_type):
            content_type = options.Extensions[self._content_type]
        return Method(
            package=package,
            service=service,
            name=method.name,
            input_type=method.input_type.lstrip("."),
            output_type=method.output_type.lstrip("."),
            bindings=tuple(bindings),
            access=access,
            permission=permission,
            comment=comments.get(path, ""),
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
            response_content_type=content_type,
        )

    # --- queries ------------------------------------------------------------------

    def field_behaviors(self, proto_field: descriptor_pb2.FieldDescriptorProto) -> set[str]:
        """Names of the ``google.api.field_behavior`` values of a field (REQUIRED, …)."""
        if self._field_behavior is None or not proto_field.HasField("options"):
            return set()
        options = self._field_options.FromString(proto_field.options.SerializeToString())
        enum = self._pool.FindEnumTypeByName("google.api.FieldBehavior")
        return {enum.values_by_number[v].name for v in options.Extensions[self._field_behavior]}

    def services(self, packages: tuple[str, ...] | None = None) -> list[str]:
        """Full names of the services in ``packages`` (all when None), in file order."""
        seen: dict[str, None] = {}
        for method in self.methods:
            if packages is None or method.package in packages:
                seen.setdefault(method.full_service, None)
        return list(seen)

    def methods_of(self, packages: tuple[str, ...]) -> Iterator[Method]:
        return (m for m in self.methods if m.package in packages)

    def cardinsa_methods(self) -> Iterator[Method]:
        return (m for m in self.methods if m.package.startswith("cardinsa."))

    def has_source_info(self) -> bool:
        return any(
            f.source_code_info.location for f in self.files if f.package.startswith("cardinsa.")
        )
