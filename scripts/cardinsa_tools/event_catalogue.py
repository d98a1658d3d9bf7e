"""`make event-catalogue`: docs/event-catalogue.md, generated from the protos.

``python -m cardinsa_tools.event_catalogue [--descriptor PATH] [--output PATH] [--check]``

Reads the descriptor set ``make proto`` builds (``gen/descriptor.binpb``, the
one the gateway loads, with the proto comments) and writes, for every payload
message of an ``events.proto`` of identity, company and core, its event types,
subjects, the comment of the contract and its fields -- with the top-level
fields of the resource it carries and the values of its enums -- plus the
envelope every event travels in. The contract is the single source: a unit
test fails when the committed document differs from this output, so a proto
change without ``make event-catalogue`` cannot go unnoticed. ``--check`` exits
with 1 instead of writing when the file is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Final

from google.protobuf import descriptor_pb2

from cardinsa_gateway.contract import Contract, Message

__all__ = [
    "DEFAULT_OUTPUT",
    "ENVELOPE_ATTRIBUTES",
    "PAYLOAD_FILES",
    "CatalogueError",
    "main",
    "render",
]

ROOT: Final = Path(__file__).resolve().parents[2]
DEFAULT_DESCRIPTOR: Final = ROOT / "gen" / "descriptor.binpb"
DEFAULT_OUTPUT: Final = ROOT / "docs" / "event-catalogue.md"

#: The files whose top-level messages are event payloads, in document order.
PAYLOAD_FILES: Final = (
    "cardinsa/identity/v1/events.proto",
    "cardinsa/company/v1/events.proto",
    "cardinsa/core/v1/events.proto",
)
ENVELOPE: Final = "cardinsa.events.v1.Event"
#: The JetStream subject prefix the dispatcher uses unless configured otherwise.
JETSTREAM_PREFIX: Final = "cardinsa.events"

#: Envelope field → its CloudEvents attribute in a webhook body (None: not sent).
ENVELOPE_ATTRIBUTES: Final[dict[str, str | None]] = {
    "id": "id",
    "source": "source",
    "type": "type",
    "subject": "subject",
    "time": "time",
    "company_id": "companyid",
    "ordering_key": None,
    "sequence": "sequence",
    "data": "data",
    "data_schema": "dataschema",
}
_ATTRIBUTE_NOTES: Final = {
    "source": "`/cardinsa/<source>`",
    "company_id": "extension attribute",
    "ordering_key": "not sent: equal to `subject`",
    "sequence": "extension attribute, a decimal string",
    "data": "the payload as JSON",
}

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS: Final = {
    _T.TYPE_DOUBLE: "double",
    _T.TYPE_FLOAT: "float",
    _T.TYPE_INT64: "int64",
    _T.TYPE_UINT64: "uint64",
    _T.TYPE_INT32: "int32",
    _T.TYPE_FIXED64: "fixed64",
    _T.TYPE_FIXED32: "fixed32",
    _T.TYPE_BOOL: "bool",
    _T.TYPE_STRING: "string",
    _T.TYPE_BYTES: "bytes",
    _T.TYPE_UINT32: "uint32",
    _T.TYPE_SFIXED32: "sfixed32",
    _T.TYPE_SFIXED64: "sfixed64",
    _T.TYPE_SINT32: "sint32",
    _T.TYPE_SINT64: "sint64",
}

_TYPE_PATTERN = re.compile(r"CloudEvents type\s+`([^`]+)`")
_SUBJECT = re.compile(r"subject\s+`([^`]+)`")
# "Transitions: a, b, c." or "Changes, as the log names them: a, b, c." at the end.
_LISTED = re.compile(r"(?:Transitions|Changes)[^:]*:\s*([^:]+?)\.?\s*$")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PLACEHOLDER = re.compile(r"<[a-z_]+>")


class CatalogueError(Exception):
    """The contract lacks what the catalogue needs (a payload's type or subject)."""


def _cell(text: str) -> str:
    """A comment as one Markdown table cell."""
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    return "<br><br>".join(p for p in paragraphs if p).replace("|", "\\|")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _type_name(contract: Contract, field: descriptor_pb2.FieldDescriptorProto) -> str:
    if field.type in (_T.TYPE_MESSAGE, _T.TYPE_ENUM):
        name = field.type_name.lstrip(".")
        entry = contract.messages.get(name)
        if entry is not None and entry.proto.options.map_entry:
            key, value = entry.proto.field
            return f"map<{_type_name(contract, key)}, {_type_name(contract, value)}>"
    else:
        name = _SCALARS[field.type]
    if field.label == _T.LABEL_REPEATED:
        return f"repeated {name}"
    return name


def _is_map(contract: Contract, field: descriptor_pb2.FieldDescriptorProto) -> bool:
    entry = contract.messages.get(field.type_name.lstrip("."))
    return entry is not None and entry.proto.options.map_entry


def _fields_table(contract: Contract, message: Message) -> list[str]:
    lines = ["| field | type | meaning |", "|---|---|---|"]
    for field in message.proto.field:
        lines.append(
            f"| `{field.name}` | `{_type_name(contract, field)}` "
            f"| {_cell(message.field_comments.get(field.name, ''))} |"
        )
    return lines


def _enum_table(contract: Contract, full_name: str) -> list[str]:
    enum = contract.enums[full_name]
    lines = [f"`{full_name}` values:", "", "| value | meaning |", "|---|---|"]
    for value in enum.proto.value:
        lines.append(f"| `{value.name}` | {_cell(enum.value_comments.get(value.name, ''))} |")
    return lines


def _payload(contract: Contract, message: Message) -> list[str]:
    comment = message.comment
    pattern = _TYPE_PATTERN.search(comment)
    subject = _SUBJECT.search(comment)
    if pattern is None or subject is None:
        raise CatalogueError(
            f"{message.full_name}: its comment must name the CloudEvents type "
            "(CloudEvents type `cardinsa.<service>.<resource>.<...>.v1`) and the "
            "subject (subject `<resources>/<id>`)"
        )
    event_type = pattern.group(1)
    lines = [
        f"## `{message.full_name}`",
        "",
        f"- **Event type**: `{event_type}`",
        f"- **Subject**: `{subject.group(1)}`",
        f"- **JetStream subject**: `{JETSTREAM_PREFIX}.<company id|platform>.{event_type}`",
        f"- **`dataschema`**: `{message.full_name}`",
    ]
    listed = _LISTED.search(comment)
    names = [n.strip() for n in listed.group(1).split(",")] if listed else []
    # Only a plain list of names becomes event types; prose stays in the comment.
    if names and all(_NAME.fullmatch(n) for n in names):
        types = ", ".join(f"`{_PLACEHOLDER.sub(n, event_type, count=1)}`" for n in names)
        lines.append(f"- **Event types** ({len(names)}): {types}")
    lines += ["", _one_line(comment), "", "Payload fields:", ""]
    lines += _fields_table(contract, message)
    for field in message.proto.field:
        name = field.type_name.lstrip(".")
        if (
            field.type == _T.TYPE_MESSAGE
            and name.startswith("cardinsa.")
            and not _is_map(contract, field)
        ):
            resource = contract.messages[name]
            lines += ["", f"`{field.name}`: `{name}`, top-level fields:", ""]
            lines += _fields_table(contract, resource)
    for field in message.proto.field:
        if field.type == _T.TYPE_ENUM:
            lines += ["", *_enum_table(contract, field.type_name.lstrip("."))]
    return [*lines, ""]


def _envelope(contract: Contract) -> list[str]:
    message = contract.messages[ENVELOPE]
    fields = [f.name for f in message.proto.field]
    if set(fields) != set(ENVELOPE_ATTRIBUTES):
        raise CatalogueError(
            f"{ENVELOPE} has fields {fields}: update ENVELOPE_ATTRIBUTES in "
            "cardinsa_tools.event_catalogue (and the webhook body) to match"
        )
    lines = [
        f"## The envelope: `{ENVELOPE}`",
        "",
        _one_line(message.comment),
        "",
        "Webhooks carry it as a CloudEvents 1.0 JSON document (`specversion` "
        '`"1.0"`, `datacontenttype` `"application/json"`); the JetStream stream '
        "carries the serialized protobuf message.",
        "",
        "| field | CloudEvents attribute (webhooks) | type | meaning |",
        "|---|---|---|---|",
    ]
    for field in message.proto.field:
        attribute = ENVELOPE_ATTRIBUTES[field.name]
        shown = f"`{attribute}`" if attribute else "--"
        note = _ATTRIBUTE_NOTES.get(field.name)
        if note:
            shown = f"{shown} ({note})" if attribute else note
        lines.append(
            f"| `{field.name}` | {shown} | `{_type_name(contract, field)}` "
            f"| {_cell(message.field_comments.get(field.name, ''))} |"
        )
    return [*lines, ""]


HEADER: Final = """\
# Event catalogue

<!-- Generated by `make event-catalogue` from the protos: do not edit by hand. -->

Every committed change of a user, a company, a policy or a claim writes one
event to its service's outbox, in the same transaction as the change. Events
reach the systems around Cardinsa three ways:

- **webhooks**: one HTTP POST per event, a CloudEvents JSON document
  ([webhook-deliveries.md](webhook-deliveries.md));
- **a JetStream stream**, when configured: the serialized envelope below, on
  subject `<prefix>.<company id or "platform">.<event type>`
  ([event-stream.md](event-stream.md));
- **`EventService.WatchEvents`** of each service (gRPC, platform callers).

In a webhook body the payload (`data`) is the payload message in the API's
JSON mapping as the REST API writes it: the field names below, 64-bit integers as
strings, enums by name, timestamps in RFC 3339, and fields with default values
(empty, zero, false) left out. Every payload carries the resource as it is
after the change, what happened and the state before.

An event type names its service, resource and occurrence and ends with a
version: `cardinsa.<service>.<resource>.<occurrence>.v<N>` (`v1` for every
event today). A consumer should ignore fields it does not know.
"""


def render(contract: Contract) -> str:
    """The whole document (deterministic: the same contract, the same bytes)."""
    files = {f.name: f for f in contract.files}
    lines = [HEADER]
    lines += _envelope(contract)
    lines += ["# Payloads", ""]
    for name in PAYLOAD_FILES:
        file = files.get(name)
        if file is None:
            raise CatalogueError(f"{name} is not in the descriptor set (run `make proto`)")
        for message in file.message_type:
            lines += _payload(contract, contract.messages[f"{file.package}.{message.name}"])
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cardinsa_tools.event_catalogue")
    parser.add_argument("--descriptor", type=Path, default=DEFAULT_DESCRIPTOR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the output is stale (writes nothing)"
    )
    args = parser.parse_args(argv)
    if not args.descriptor.exists():
        print(f"{args.descriptor} does not exist: run `make proto` first", file=sys.stderr)
        return 2
    try:
        text = render(Contract.load(args.descriptor))
    except CatalogueError as exc:
        print(f"event catalogue: {exc}", file=sys.stderr)
        return 1
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is stale: run `make event-catalogue`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(f"{args.output} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
