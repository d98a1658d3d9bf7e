"""docs/event-catalogue.md is the generator's output for the current protos."""

from __future__ import annotations

import inspect
import json
import uuid
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from cardinsa.core.v1 import events_pb2 as core_events_pb2
from cardinsa.events.v1 import events_pb2
from cardinsa_company.dispatcher.jetstream import JetStreamSink
from cardinsa_company.domain.webhooks import cloud_event_body
from cardinsa_gateway.contract import Contract
from cardinsa_tools import event_catalogue

DESCRIPTOR_SET = Path(__file__).resolve().parents[3] / "gen" / "descriptor.binpb"


@pytest.fixture(scope="module")
def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())


def test_the_committed_catalogue_is_up_to_date(
    descriptor_set: descriptor_pb2.FileDescriptorSet,
) -> None:
    expected = event_catalogue.render(Contract(descriptor_set))
    committed = event_catalogue.DEFAULT_OUTPUT.read_text(encoding="utf-8")
    assert committed == expected, "docs/event-catalogue.md is stale: run `make event-catalogue`"


def test_every_payload_and_its_resource_fields_are_listed(
    descriptor_set: descriptor_pb2.FileDescriptorSet,
) -> None:
    text = event_catalogue.render(Contract(descriptor_set))
    for payload in (
        "cardinsa.identity.v1.UserEvent",
        "cardinsa.company.v1.CompanyEvent",
        "cardinsa.core.v1.PolicyEvent",
        "cardinsa.core.v1.ClaimEvent",
    ):
        assert f"## `{payload}`" in text
    assert "`cardinsa.core.policy.schedule_cancel.v1`" in text
    assert "`cardinsa.identity.user.roles_changed.v1`" in text
    assert "| `written_premium` | `google.type.Money` |" in text
    assert "| `feature_flags` | `map<string, bool>` |" in text
    assert "| `CANCEL_PENDING` |" in text


def test_the_envelope_table_names_the_attributes_a_webhook_body_has() -> None:
    event = events_pb2.Event(
        id=str(uuid.uuid4()),
        source="core",
        type="cardinsa.core.policy.bound.v1",
        subject="policies/1",
        company_id=str(uuid.uuid4()),
        ordering_key="policies/1",
        sequence=7,
        data_schema="cardinsa.core.v1.PolicyEvent",
    )
    event.data.Pack(core_events_pb2.PolicyEvent(transition="bind"))
    body = json.loads(cloud_event_body(event))
    sent = {a for a in event_catalogue.ENVELOPE_ATTRIBUTES.values() if a}
    assert set(body) == sent | {"specversion", "datacontenttype"}


def test_the_jetstream_subject_uses_the_sinks_default_prefix() -> None:
    default = inspect.signature(JetStreamSink).parameters["subject_prefix"].default
    assert default == event_catalogue.JETSTREAM_PREFIX


def test_a_payload_without_type_and_subject_in_its_comment_is_refused(
    descriptor_set: descriptor_pb2.FileDescriptorSet,
) -> None:
    changed = descriptor_pb2.FileDescriptorSet()
    changed.CopyFrom(descriptor_set)
    file = next(f for f in changed.file if f.name == "cardinsa/core/v1/events.proto")
    location = next(loc for loc in file.source_code_info.location if list(loc.path) == [4, 0])
    location.leading_comments = " The policy after a change.\n"
    with pytest.raises(event_catalogue.CatalogueError, match=r"cardinsa\.core\.v1\.PolicyEvent"):
        event_catalogue.render(Contract(changed))


def test_check_reports_a_stale_file_and_writing_fixes_it(tmp_path: Path) -> None:
    output = tmp_path / "event-catalogue.md"
    output.write_text("# stale\n", encoding="utf-8")
    args = ["--descriptor", str(DESCRIPTOR_SET), "--output", str(output)]
    assert event_catalogue.main([*args, "--check"]) == 1
    assert output.read_text(encoding="utf-8") == "# stale\n"
    assert event_catalogue.main(args) == 0
    assert event_catalogue.main([*args, "--check"]) == 0
