"""Shared protobuf conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from cardinsa_foundation.convert import timestamp

ZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    ZONES,
)
def test_timestamp_matches_the_protobuf_library(value: datetime, zone: timezone | None) -> None:
    value = value.replace(tzinfo=zone)
    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected


def test_timestamp_of_nothing_is_unset() -> None:
    assert timestamp(None) is None


def test_timestamp_before_the_epoch_rounds_seconds_down() -> None:
    stamp = timestamp(datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC))
    assert stamp is not None and (stamp.seconds, stamp.nanos) == (-1, 500_000_000)
