"""gRPC helpers: request frames, Money and Date messages, logins."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# ------------------------------------------------------------------ gRPC helpers


def grpc_frame(message: Any) -> bytes:
    """One gRPC request message on the wire: uncompressed flag, length, bytes."""
    payload: bytes = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def money(amount: str, currency: str) -> Any:
    from google.type import money_pb2

    value = Decimal(amount)
    units = int(value)
    return money_pb2.Money(
        currency_code=currency, units=units, nanos=int((value - units) * 1_000_000_000)
    )


def gdate(day: dt.date) -> Any:
    from google.type import date_pb2

    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


@dataclass
class Account:
    email: str
    company_id: str
    token: str = ""
    user_id: str = ""
    expires_at: float = 0.0


async def login(identity: str, account: Account, password: str) -> str:
    import grpc

    from cardinsa.identity.v1 import auth_service_pb2, auth_service_pb2_grpc

    if account.token and time.time() < account.expires_at - 120:
        return account.token
    async with grpc.aio.insecure_channel(identity) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = await stub.Login(
            auth_service_pb2.LoginRequest(email=account.email, password=password), timeout=30
        )
    account.token = reply.access_token
    account.expires_at = time.time() + reply.expires_in.seconds
    return account.token
