"""IdentityService servicer: server info, JWKS, permissions, signing keys, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from cardinsa.common.v1 import common_pb2
from cardinsa.identity.v1 import identity_service_pb2, identity_service_pb2_grpc, resources_pb2
from cardinsa_foundation.convert import audit_event_to_proto
from cardinsa_foundation.errors import PermissionDenied, Unavailable
from cardinsa_foundation.revocation import SESSION, RevocationBatch
from cardinsa_foundation.server_info import ServerInfoProvider
from cardinsa_foundation.use_cases import parse_uuid, require_principal
from cardinsa_identity.application.audit_log import AuditLogUseCases
from cardinsa_identity.application.context import IdentityContext
from cardinsa_identity.domain.permissions import CATALOGUE
from cardinsa_identity.handlers.convert import signing_key_to_proto


class IdentityServicer(identity_service_pb2_grpc.IdentityServiceServicer):
    def __init__(
        self, ctx: IdentityContext, info: ServerInfoProvider, audit: AuditLogUseCases
    ) -> None:
        self.ctx = ctx
        self.info = info
        self.audit = audit
        self._permissions = identity_service_pb2.ListPermissionsResponse(
            permissions=[
                resources_pb2.Permission(name=p.name, description=p.description) for p in CATALOGUE
            ]
        )

    async def GetServerInfo(
        self, request: identity_service_pb2.GetServerInfoRequest, context: Any
    ) -> common_pb2.ServerInfo:
        return await self.info.build_message()

    async def GetJwks(
        self, request: identity_service_pb2.GetJwksRequest, context: Any
    ) -> identity_service_pb2.Jwks:
        return identity_service_pb2.Jwks(
            keys=[resources_pb2.Jwk(**jwk) for jwk in self.ctx.keys.jwks()["keys"]]
        )

    async def WatchRevocations(
        self, request: identity_service_pb2.WatchRevocationsRequest, context: Any
    ) -> AsyncIterator[identity_service_pb2.WatchRevocationsResponse]:
        hub = self.ctx.revocations
        if hub is None:
            raise Unavailable("revocations are not served here", reason="REVOCATIONS_UNAVAILABLE")
        async for batch in hub.watch(request.after_cursor):
            yield _batch_to_proto(batch)

    async def ListPermissions(
        self, request: identity_service_pb2.ListPermissionsRequest, context: Any
    ) -> identity_service_pb2.ListPermissionsResponse:
        return self._permissions

    async def ListSigningKeys(
        self, request: identity_service_pb2.ListSigningKeysRequest, context: Any
    ) -> identity_service_pb2.ListSigningKeysResponse:
        rows = await self.ctx.keys.list_keys()
        return identity_service_pb2.ListSigningKeysResponse(
            signing_keys=[signing_key_to_proto(r) for r in rows]
        )

    async def RotateSigningKey(
        self, request: identity_service_pb2.RotateSigningKeyRequest, context: Any
    ) -> resources_pb2.SigningKey:
        principal = require_principal()
        if not principal.is_platform_admin:
            # Signing keys are platform-wide: a company role must never rotate them,
            # even if a custom role was given the permission.
            raise PermissionDenied(
                "only platform administrators rotate signing keys", reason="PLATFORM_ADMIN_ONLY"
            )
        if request.request_id:
            parse_uuid(request.request_id, "request_id")
        created = await self.ctx.keys.reconcile(publish_new=True, request_id=request.request_id)
        assert created is not None
        async with self.ctx.db.unit_of_work(company_id=None, cross_tenant=True) as session:
            await self.ctx.audit.record(
                session,
                action="signing_key.rotate",
                entity_type="signing_key",
                entity_id=created.kid,
                company_id=None,
            )
        return signing_key_to_proto(created)

    async def ListAuditEvents(
        self, request: identity_service_pb2.ListAuditEventsRequest, context: Any
    ) -> identity_service_pb2.ListAuditEventsResponse:
        page = await self.audit.list(
            page_size=request.page_size,
            page_token=request.page_token,
            filter=request.filter,
            company_id=request.company_id,
        )
        return identity_service_pb2.ListAuditEventsResponse(
            audit_events=[audit_event_to_proto(e) for e in page.items],
            next_page_token=page.next_page_token,
        )


def _stamp(epoch_s: float) -> Timestamp:
    seconds = int(epoch_s // 1)
    return Timestamp(seconds=seconds, nanos=int((epoch_s - seconds) * 1e9))


def _batch_to_proto(batch: RevocationBatch) -> identity_service_pb2.WatchRevocationsResponse:
    return identity_service_pb2.WatchRevocationsResponse(
        revocations=[
            identity_service_pb2.Revocation(
                cursor=r.cursor,
                not_before=_stamp(r.not_before),
                expire_time=_stamp(r.expire_at),
                reason=r.reason,
                **({"session_id": r.target} if r.kind == SESSION else {"subject": r.target}),
            )
            for r in batch.revocations
        ],
        cursor=batch.cursor,
        caught_up=batch.caught_up,
        reset=batch.reset,
        sync_time=_stamp(batch.sync_time),
    )
