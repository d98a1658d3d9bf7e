"""OpenAPI 3.1 description of the REST surface, generated from the descriptor set.

Paths and verbs come from the ``google.api.http`` annotations (additional
bindings included), parameters and bodies from the request messages, schemas
from the messages and enums, descriptions from the proto comments (the
descriptor set carries source info), security from
``(cardinsa.common.v1.authorization)``. The JSON shapes are those the gateway's
transcoder produces: proto field names, int64 as strings, enums as names,
well-known types in their canonical JSON form, errors as ``google.rpc.Status``.

Written to ``gen/openapi.json`` by ``make proto`` (scripts/codegen.py) and served
by the gateway at ``/openapi.json``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf import descriptor_pb2

from cardinsa_gateway.contract import Access, Contract, HttpBinding, Method

Json = dict[str, Any]
FD = descriptor_pb2.FieldDescriptorProto

REF = "#/components/schemas/"
#: A response of this type is raw bytes, not JSON (see ``response_content_type``);
#: a request body of this type reaches the service as the raw bytes sent.
HTTP_BODY = "google.api.HttpBody"
ERROR_SCHEMA = "google.rpc.Status"
ERROR_DETAILS = (
    "google.rpc.ErrorInfo",
    "google.rpc.BadRequest",
    "google.rpc.RequestInfo",
    "google.rpc.RetryInfo",
    "google.rpc.PreconditionFailure",
    "google.rpc.ResourceInfo",
)
_VARIABLE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")

_SCALARS: dict[int, Json] = {
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    FD.TYPE_INT64: {"type": "string", "format": "int64"},
    FD.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FD.TYPE_INT32: {"type": "integer", "format": "int32"},
    FD.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FD.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FD.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FD.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FD.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FD.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FD.TYPE_SINT64: {"type": "string", "format": "int64"},
}

# Well-known types in their canonical proto3 JSON form.
_WELL_KNOWN: dict[str, Json] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 timestamp, for example `2026-01-31T12:00:00Z`.",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": "Duration in seconds with an `s` suffix, for example `900s` or `1.5s`.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths, for example `display_name,phone`.",
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string", "description": "Type URL of the value."}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"], "format": "int64"},
    "google.protobuf.UInt64Value": {"type": ["string", "null"], "format": "uint64"},
    "google.protobuf.Int32Value": {"type": ["integer", "null"], "format": "int32"},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"], "minimum": 0},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
}

_STATUS_TEXT = {
    "400": "Invalid input (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `OUT_OF_RANGE`): "
    "`details` carries `BadRequest` field violations for invalid fields.",
    "401": "No access token, or an invalid, expired or wrong-issuer one (`UNAUTHENTICATED`).",
    "403": "The token lacks the permission the method requires (`PERMISSION_DENIED`).",
    "404": "Unknown path, or no such resource (`NOT_FOUND`); another company's resource "
    "looks exactly like one that does not exist.",
    "409": "Conflict: a duplicate (`ALREADY_EXISTS`) or a stale etag (`ABORTED`).",
    "429": "Too many requests (gateway rate limit or `RESOURCE_EXHAUSTED` with `RetryInfo`).",
    "503": "The service is unavailable (`UNAVAILABLE`); retry with backoff.",
}

API_DESCRIPTION = """\
REST/JSON surface of the Cardinsa services, transcoded by the gateway to gRPC
(the same methods are reachable as native gRPC on the same port).

**Authentication**: `Authorization: Bearer <access token>` from
`POST /v1/auth:login`. Methods marked open need no token. Each method's
permission is listed in its description and in `x-cardinsa-authorization`.

**JSON**: field names as in the protos (`snake_case`); 64-bit integers are
strings; enums are their names; timestamps RFC 3339; fields with default values
(empty, zero, false) are omitted from responses. Unknown query parameters are
refused with 400.

**Errors**: every error is a `google.rpc.Status` — `{code, message, details}`
where `code` is the gRPC code, `details` carries exactly one `ErrorInfo`
(`reason`, `domain`), `BadRequest` field violations for invalid input and
`RequestInfo` with the request id (also returned in the `x-request-id` header).

**Events**: every change of a user, company, policy or claim is also
published as an event (webhooks, optionally a NATS JetStream stream); the
event types and their payloads are listed in `docs/event-catalogue.md` of
the Cardinsa repository, the delivery format in `docs/webhook-deliveries.md`.
"""


def _path_variables(template: str) -> list[str]:
    return [m.group(1) for m in _VARIABLE.finditer(template)]


def path_parameter(field_path: str) -> str:
    """The OpenAPI name of the path variable bound to ``field_path``.

    A dot is legal in a path template (RFC 6570), but common client generators
    refuse ``{policy.id}`` ("Incorrect path templating") or read the dot as
    attribute access, and drop the operation. A nested field is named as the
    other paths of its resource name it: ``policy.id`` → ``policy_id``,
    ``unit.company_id`` → ``company_id`` (so ``PATCH`` and ``GET
    /v1/companies/{company_id}/departments/{department_id}`` share one path
    item). The URL is the same: only the name in the description changes."""
    parts = field_path.split(".")
    if len(parts) == 1:
        return field_path
    return f"{parts[-2]}_id" if parts[-1] == "id" else parts[-1]


def openapi_path(template: str) -> str:
    """``/v1/{name=users/*}`` → ``/v1/{name}`` (OpenAPI has no path patterns);
    ``/v1/policies/{policy.id}`` → ``/v1/policies/{policy_id}``."""
    return _VARIABLE.sub(lambda m: "{" + path_parameter(m.group(1)) + "}", template)


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", flat)
    return (match.group(1) if match else flat)[:120]


class OpenApiBuilder:
    def __init__(self, contract: Contract, *, title: str = "Cardinsa API", version: str = "v1"):
        self.contract = contract
        self.title = title
        self.version = version
        self.schemas: dict[str, Json] = {}
        self._pending: list[str] = []
        self._operation_ids: set[str] = set()

    # --- schemas ------------------------------------------------------------------

    def _ref(self, full_name: str) -> Json:
        if full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[full_name])
        if full_name not in self.schemas and full_name not in self._pending:
            self._pending.append(full_name)
        return {"$ref": REF + full_name}

    def _field_schema(self, f: descriptor_pb2.FieldDescriptorProto) -> Json:
        type_name = f.type_name.lstrip(".")
        if f.type == FD.TYPE_MESSAGE:
            message = self.contract.messages.get(type_name)
            if message is not None and message.proto.options.map_entry:
                key, value = message.proto.field[0], message.proto.field[1]
                return {
                    "type": "object",
                    "propertyNames": self._field_schema(key),
                    "additionalProperties": self._field_schema(value),
                }
            item = self._ref(type_name)
        elif f.type == FD.TYPE_ENUM:
            item = (
                {"type": "null"}
                if type_name == "google.protobuf.NullValue"
                else self._ref(type_name)
            )
        else:
            item = dict(_SCALARS[f.type])
        if f.label == FD.LABEL_REPEATED:
            return {"type": "array", "items": item}
        return item

    def _describe_field(
        self, schema: Json, comment: str, behaviors: set[str], oneof: str | None
    ) -> Json:
        notes = []
        if "OUTPUT_ONLY" in behaviors:
            schema["readOnly"] = True
            notes.append("Output only.")
        if "INPUT_ONLY" in behaviors:
            schema["writeOnly"] = True
            notes.append("Input only.")
        if "IMMUTABLE" in behaviors:
            notes.append("Immutable once set.")
        if oneof:
            notes.append(f"Member of the oneof `{oneof}`: set at most one of its fields.")
        text = "\n\n".join(part for part in [comment, " ".join(notes)] if part)
        if text:
            schema["description"] = text
        return schema

    def _message_schema(self, full_name: str) -> Json:
        message = self.contract.messages[full_name]
        proto = message.proto
        properties: Json = {}
        required: list[str] = []
        for f in proto.field:
            behaviors = self.contract.field_behaviors(f)
            oneof = None
            if f.HasField("oneof_index") and not f.proto3_optional:
                oneof = proto.oneof_decl[f.oneof_index].name
            properties[f.name] = self._describe_field(
                self._field_schema(f), message.field_comments.get(f.name, ""), behaviors, oneof
            )
            if "REQUIRED" in behaviors:
                required.append(f.name)
        schema: Json = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        if message.comment:
            schema["description"] = message.comment
        return schema

    def _enum_schema(self, full_name: str) -> Json:
        enum = self.contract.enums[full_name]
        names = [v.name for v in enum.proto.value]
        lines = [
            f"- `{v.name}`: {enum.value_comments[v.name]}"
            if enum.value_comments.get(v.name)
            else f"- `{v.name}`"
            for v in enum.proto.value
        ]
        description = (
            "\n".join([enum.comment, "", *lines]).strip() if enum.comment else "\n".join(lines)
        )
        return {"type": "string", "enum": names, "description": description}

    def _drain(self) -> None:
        while self._pending:
            name = self._pending.pop(0)
            if name in self.schemas:
                continue
            if name in self.contract.messages:
                self.schemas[name] = self._message_schema(name)
            elif name in self.contract.enums:
                self.schemas[name] = self._enum_schema(name)
            else:
                raise KeyError(f"type {name} is not in the descriptor set")

    # --- operations -----------------------------------------------------------------

    def _resolve(self, message_name: str, dotted: str) -> descriptor_pb2.FieldDescriptorProto:
        current = message_name
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            proto = self.contract.messages[current].proto
            found = next((f for f in proto.field if f.name == part), None)
            if found is None:
                raise KeyError(f"{message_name} has no field {dotted}")
            if i == len(parts) - 1:
                return found
            current = found.type_name.lstrip(".")
        raise KeyError(dotted)

    def _comment_of(self, message_name: str, dotted: str) -> str:
        parts = dotted.split(".")
        owner = message_name
        for part in parts[:-1]:
            owner = self._resolve(owner, part).type_name.lstrip(".")
        return self.contract.messages[owner].field_comments.get(parts[-1], "")

    def _query_parameters(
        self, message_name: str, skip: set[str], prefix: str = "", depth: int = 0
    ) -> list[Json]:
        params: list[Json] = []
        message = self.contract.messages[message_name]
        for f in message.proto.field:
            name = f"{prefix}{f.name}"
            if name in skip:
                continue
            type_name = f.type_name.lstrip(".")
            is_message = f.type == FD.TYPE_MESSAGE
            if is_message and type_name not in _WELL_KNOWN:
                if f.label == FD.LABEL_REPEATED or depth >= 2:
                    continue  # not expressible as query parameters
                params.extend(self._query_parameters(type_name, skip, f"{name}.", depth + 1))
                continue
            schema = self._field_schema(f)
            behaviors = self.contract.field_behaviors(f)
            if "OUTPUT_ONLY" in behaviors:
                continue
            param: Json = {"name": name, "in": "query", "schema": schema}
            comment = message.field_comments.get(f.name, "")
            if comment:
                param["description"] = comment
            if "REQUIRED" in behaviors and depth == 0:
                param["required"] = True
            if f.label == FD.LABEL_REPEATED:
                param["style"] = "form"
                param["explode"] = True
            params.append(param)
        return params

    def _body_schema(self, method: Method, binding: HttpBinding, path_fields: set[str]) -> Json:
        if binding.body == "*":
            top_level = {p for p in path_fields if "." not in p}
            if not top_level:
                return self._ref(method.input_type)
            full = self._message_schema(method.input_type)
            full["properties"] = {k: v for k, v in full["properties"].items() if k not in top_level}
            if "required" in full:
                full["required"] = [r for r in full["required"] if r not in top_level]
                if not full["required"]:
                    del full["required"]
            return full
        field = self._resolve(method.input_type, binding.body)
        if field.type_name.lstrip(".") == HTTP_BODY:
            # The transcoder hands the raw body to the service (a signed JSON
            # document, e.g. a payment provider's event): any JSON object.
            return {"type": "object"}
        return self._field_schema(field)

    def _operation(self, method: Method, binding: HttpBinding, index: int) -> Json:
        variables = _path_variables(binding.path)
        parameters: list[Json] = []
        for variable in variables:
            field = self._resolve(method.input_type, variable)
            schema = self._field_schema(field)
            param: Json = {
                "name": path_parameter(variable),
                "in": "path",
                "required": True,
                "schema": schema,
            }
            comment = self._comment_of(method.input_type, variable)
            if comment:
                param["description"] = comment
            if "." in variable:
                # The request field the transcoder binds the segment to.
                param["x-cardinsa-field"] = variable
            parameters.append(param)
        skip = set(variables)
        if binding.body != "*":
            if binding.body:
                skip.add(binding.body)
            parameters.extend(self._query_parameters(method.input_type, skip))
        names = [p["name"] for p in parameters]
        if len(set(names)) != len(names):
            raise ValueError(
                f"{method.grpc_path} {binding.verb} {binding.path}: two parameters "
                f"named alike (path variables are renamed, see path_parameter): {sorted(names)}"
            )
        request_body: Json | None = None
        if binding.body:
            request_body = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": self._body_schema(method, binding, set(variables))
                    }
                },
            }

        operation_id = f"{method.service}_{method.name}" + (f"_{index}" if index else "")
        while operation_id in self._operation_ids:
            operation_id += "_"
        self._operation_ids.add(operation_id)

        if binding.response_body:
            field = self._resolve(method.output_type, binding.response_body)
            content: Json = {"application/json": {"schema": self._field_schema(field)}}
        elif method.output_type == HTTP_BODY:
            # The transcoder answers with HttpBody's bytes and content type.
            media_type = method.response_content_type or "application/octet-stream"
            content = {media_type: {"schema": {"type": "string", "format": "binary"}}}
        else:
            content = {"application/json": {"schema": self._ref(method.output_type)}}

        access = {
            Access.PUBLIC: "Open: no access token needed.",
            Access.AUTHENTICATED: "Requires any valid access token.",
            Access.PERMISSION: f"Requires the permission `{method.permission}`.",
            Access.DENIED: "Refused: the method declares no authorization rule.",
        }[method.access]
        description = "\n\n".join(
            part for part in [method.comment, f"**Authorization**: {access}"] if part
        )
        responses: Json = {
            "200": {"description": "OK", "content": content},
            "400": {"$ref": "#/components/responses/BadRequest"},
        }
        if not method.is_public:
            responses["401"] = {"$ref": "#/components/responses/Unauthenticated"}
        if method.access is Access.PERMISSION:
            responses["403"] = {"$ref": "#/components/responses/PermissionDenied"}
        responses["404"] = {"$ref": "#/components/responses/NotFound"}
        if binding.verb in {"POST", "PATCH", "PUT", "DELETE"}:
            responses["409"] = {"$ref": "#/components/responses/Conflict"}
        responses["429"] = {"$ref": "#/components/responses/TooManyRequests"}
        responses["503"] = {"$ref": "#/components/responses/Unavailable"}
        responses["default"] = {"$ref": "#/components/responses/Error"}

        operation: Json = {
            "operationId": operation_id,
            "summary": _first_sentence(method.comment) or method.name,
            "description": description,
            "tags": [method.service],
        }
        if method.is_public:
            operation["security"] = []
        if parameters:
            operation["parameters"] = parameters
        if request_body is not None:
            operation["requestBody"] = request_body
        operation["responses"] = responses
        operation["x-grpc-method"] = method.grpc_path
        operation["x-cardinsa-authorization"] = {"access": method.access.value} | (
            {"permission": method.permission} if method.permission else {}
        )
        return operation

    # --- document -----------------------------------------------------------------

    def build(self) -> Json:
        paths: dict[str, Json] = {}
        tags: dict[str, Json] = {}
        for method in self.contract.cardinsa_methods():
            if method.client_streaming or method.server_streaming:
                continue
            tags.setdefault(
                method.service,
                {
                    "name": method.service,
                    "description": self.contract.service_comments.get(method.full_service, ""),
                    "x-grpc-service": method.full_service,
                },
            )
            for index, binding in enumerate(method.bindings):
                path = openapi_path(binding.path)
                verb = binding.verb.lower()
                item = paths.setdefault(path, {})
                if verb in item:
                    raise ValueError(f"{binding.verb} {path} is bound twice")
                item[verb] = self._operation(method, binding, index)
        for name in (ERROR_SCHEMA, *ERROR_DETAILS):
            if name in self.contract.messages:
                self._ref(name)
        self._drain()
        self._error_schema()
        return {
            "openapi": "3.1.0",
            "info": {
                "title": self.title,
                "version": self.version,
                "description": API_DESCRIPTION,
            },
            "tags": list(tags.values()),
            "paths": dict(sorted(paths.items())),
            "components": {
                "schemas": dict(sorted(self.schemas.items())),
                "responses": self._responses(),
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "Access token from `POST /v1/auth:login`.",
                    }
                },
            },
            "security": [{"bearerAuth": []}],
        }

    def _error_schema(self) -> None:
        """``google.rpc.Status`` with ``details`` typed as the detail messages we send."""
        status = self.schemas.get(ERROR_SCHEMA)
        if status is None:
            return
        variants = [
            {
                "allOf": [
                    {"$ref": REF + name},
                    {
                        "type": "object",
                        "properties": {"@type": {"const": f"type.googleapis.com/{name}"}},
                        "required": ["@type"],
                    },
                ]
            }
            for name in ERROR_DETAILS
            if name in self.schemas
        ]
        status["properties"]["code"]["description"] = (
            "The gRPC status code (for example 3 INVALID_ARGUMENT, 5 NOT_FOUND, "
            "7 PERMISSION_DENIED, 16 UNAUTHENTICATED)."
        )
        status["properties"]["details"] = {
            "type": "array",
            "description": "Typed details: one `ErrorInfo`, `BadRequest` for invalid input, "
            "`PreconditionFailure` naming what stands in the way of a refused change, "
            "`RequestInfo` with the request id, `RetryInfo` when the client should wait.",
            "items": {"anyOf": [*variants, self._ref("google.protobuf.Any")]},
        }
        status["required"] = ["code", "message"]

    @staticmethod
    def _responses() -> Json:
        def error(description: str) -> Json:
            return {
                "description": description,
                "headers": {
                    "x-request-id": {
                        "description": "The request id (also in the `RequestInfo` detail).",
                        "schema": {"type": "string"},
                    }
                },
                "content": {"application/json": {"schema": {"$ref": REF + ERROR_SCHEMA}}},
            }

        return {
            "BadRequest": error(_STATUS_TEXT["400"]),
            "Unauthenticated": error(_STATUS_TEXT["401"]),
            "PermissionDenied": error(_STATUS_TEXT["403"]),
            "NotFound": error(_STATUS_TEXT["404"]),
            "Conflict": error(_STATUS_TEXT["409"]),
            "TooManyRequests": error(_STATUS_TEXT["429"]),
            "Unavailable": error(_STATUS_TEXT["503"]),
            "Error": error("Any other error, in the same shape."),
        }


def build_openapi(contract: Contract) -> Json:
    return OpenApiBuilder(contract).build()


def render_openapi(contract: Contract) -> str:
    return json.dumps(build_openapi(contract), indent=1, ensure_ascii=False) + "\n"
