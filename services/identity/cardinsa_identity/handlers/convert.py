"""Protobuf ⇄ domain/repository values, in one place for every identity handler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from cardinsa.identity.v1 import auth_service_pb2, resources_pb2
from cardinsa_foundation.convert import timestamp
from cardinsa_foundation.errors import FieldViolation, InvalidArgument
from cardinsa_identity.application.auth import IssuedChallenge, IssuedTokens
from cardinsa_identity.domain.users import UserProfile
from cardinsa_identity.repository.models import (
    ApiKeyRow,
    RoleBindingRow,
    RoleRow,
    ServiceAccountRow,
    SessionRow,
    SigningKeyRow,
    UserRow,
)


def optional_time(message: Any, field: str) -> datetime | None:
    """A Timestamp field of a request as an aware datetime, None when unset."""
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            f"{field} is out of range", field_violations=[FieldViolation(field, "out of range")]
        ) from None


def user_to_proto(user: UserRow, roles: list[str]) -> resources_pb2.User:
    return resources_pb2.User(
        id=str(user.id),
        company_id=str(user.company_id),
        email=user.email,
        given_name=user.given_name,
        family_name=user.family_name,
        display_name=user.display_name,
        phone=user.phone,
        locale=user.locale,
        state=user.state,  # the enum value's name
        last_login_time=timestamp(user.last_login_time),
        create_time=timestamp(user.create_time),
        update_time=timestamp(user.update_time),
        delete_time=timestamp(user.delete_time),
        etag=user.etag,
        roles=roles,
    )


def profile_from_proto(user: resources_pb2.User) -> UserProfile:
    return UserProfile(
        email=user.email,
        given_name=user.given_name,
        family_name=user.family_name,
        display_name=user.display_name,
        phone=user.phone,
        locale=user.locale,
    )


def session_to_proto(row: SessionRow) -> resources_pb2.Session:
    return resources_pb2.Session(
        id=str(row.id),
        user_id=str(row.user_id),
        create_time=timestamp(row.create_time),
        last_use_time=timestamp(row.last_use_time),
        expire_time=timestamp(row.expire_time),
        revoke_time=timestamp(row.revoke_time),
        revoke_reason=row.revoke_reason or "",
        client_address=row.client_address or "",
        user_agent=row.user_agent or "",
    )


def tokens_to_proto(tokens: IssuedTokens) -> auth_service_pb2.TokenPair:
    expires_in = Duration()
    expires_in.FromTimedelta(tokens.expires_in if tokens.expires_in else timedelta(0))
    return auth_service_pb2.TokenPair(
        access_token=tokens.access_token,
        access_token_expire_time=timestamp(tokens.access_expire_time),
        refresh_token=tokens.refresh_token,
        refresh_token_expire_time=timestamp(tokens.refresh_expire_time),
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
        expires_in=expires_in,
        session_id=tokens.session_id,
        amr=list(tokens.amr),
    )


def login_result_to_proto(result: IssuedTokens | IssuedChallenge) -> auth_service_pb2.TokenPair:
    """Tokens, or (no tokens) the challenge the login needs answered first."""
    if isinstance(result, IssuedTokens):
        return tokens_to_proto(result)
    return auth_service_pb2.TokenPair(
        challenge=auth_service_pb2.AuthChallenge(
            kind=result.kind.value,
            session=result.session,
            expire_time=timestamp(result.expire_time),
        )
    )


def role_to_proto(row: RoleRow, permissions: list[str] | None = None) -> resources_pb2.Role:
    return resources_pb2.Role(
        id=str(row.id),
        company_id=str(row.company_id) if row.company_id else "",
        name=row.name,
        description=row.description,
        permissions=sorted(permissions if permissions is not None else row.permissions),
        built_in=row.built_in,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
    )


def role_binding_to_proto(row: RoleBindingRow) -> resources_pb2.RoleBinding:
    return resources_pb2.RoleBinding(
        id=str(row.id),
        company_id=str(row.company_id),
        user_id=str(row.user_id),
        role_id=str(row.role_id),
        create_time=timestamp(row.create_time),
    )


def service_account_to_proto(row: ServiceAccountRow) -> resources_pb2.ServiceAccount:
    return resources_pb2.ServiceAccount(
        id=str(row.id),
        company_id=str(row.company_id),
        name=row.name,
        description=row.description,
        create_time=timestamp(row.create_time),
        delete_time=timestamp(row.delete_time),
        etag=row.etag,
    )


def api_key_to_proto(row: ApiKeyRow) -> resources_pb2.ApiKey:
    return resources_pb2.ApiKey(
        id=str(row.id),
        service_account_id=str(row.service_account_id),
        prefix=row.prefix,
        display_name=row.display_name,
        permissions=sorted(row.permissions),
        expire_time=timestamp(row.expire_time),
        last_use_time=timestamp(row.last_use_time),
        revoke_time=timestamp(row.revoke_time),
        create_time=timestamp(row.create_time),
    )


def signing_key_to_proto(row: SigningKeyRow) -> resources_pb2.SigningKey:
    return resources_pb2.SigningKey(
        kid=row.kid,
        algorithm=row.algorithm,
        state=row.state,  # the enum value's name
        create_time=timestamp(row.create_time),
        activate_time=timestamp(row.activate_time),
        retire_time=timestamp(row.retire_time),
    )
