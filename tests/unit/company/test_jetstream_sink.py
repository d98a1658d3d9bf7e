"""The JetStream sink without a server: subjects, and URLs safe to log."""

from __future__ import annotations

import pytest

from cardinsa.events.v1 import events_pb2
from cardinsa_company.dispatcher.jetstream import JetStreamSink, redact_url, subject_for


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://user:pa%3Ass@nats.internal:4222", "nats://***@nats.internal:4222"),
        ("tls://s3cr3t-token@nats.internal", "tls://***@nats.internal"),
        ("nats://u:p@[::1]:4222", "nats://***@[::1]:4222"),
        ("nats://u:p@host:4222/?secret=1#x", "nats://***@host:4222/"),
        ("nats://u:p@host:port", "<unparsable NATS URL>"),
    ],
)
def test_a_redacted_url_keeps_no_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_repr_and_the_error_scrubbing_hide_the_password() -> None:
    sink = JetStreamSink("nats://dispatcher:pa%3Ass@nats.internal:4222")
    assert "pa%3Ass" not in repr(sink) and "pa:ss" not in repr(sink)
    assert "***@nats.internal:4222" in repr(sink)
    assert sink._scrub("auth failed for pa:ss and pa%3Ass") == "auth failed for *** and ***"


def _event(company_id: str, type_: str) -> events_pb2.Event:
    return events_pb2.Event(id="e1", company_id=company_id, type=type_)


def test_subjects_name_the_company_or_the_platform_then_the_type() -> None:
    assert (
        subject_for("cardinsa.events", _event("c1", "cardinsa.core.policy.bind.v1"))
        == "cardinsa.events.c1.cardinsa.core.policy.bind.v1"
    )
    assert (
        subject_for("p", _event("", "cardinsa.identity.user.created.v1"))
        == "p.platform.cardinsa.identity.user.created.v1"
    )


@pytest.mark.parametrize(
    ("company_id", "type_"),
    [("c1", ""), ("c 1", "cardinsa.a.b.c.v1"), ("c1", "cardinsa.*.b.v1"), ("c1", "x..y")],
)
def test_a_type_or_company_that_makes_no_valid_subject_is_refused(
    company_id: str, type_: str
) -> None:
    with pytest.raises(ValueError, match="valid NATS subject"):
        subject_for("cardinsa.events", _event(company_id, type_))


@pytest.mark.parametrize(
    ("stream", "prefix"),
    [("", "cardinsa.events"), ("A.B", "cardinsa.events"), ("S", "cardinsa.>"), ("S", "a..b")],
)
def test_invalid_stream_names_and_prefixes_are_refused(stream: str, prefix: str) -> None:
    with pytest.raises(ValueError, match="valid"):
        JetStreamSink("nats://127.0.0.1:4222", stream=stream, subject_prefix=prefix)
