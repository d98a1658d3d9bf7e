"""Service accounts and their API keys (AccessService).

Tenancy: a platform admin creates a service account in another company only by
naming it in ``service_account.company_id`` (an IMMUTABLE field, as
``user.company_id`` on CreateUser); every id-based call works in the caller's
own company. An id that is malformed, missing or another company's gives the
same NOT_FOUND.

Nobody acts on an account more privileged than themselves (domain/privilege.py):
issuing, listing or revoking the API keys of a service account, or deleting it,
needs every permission its usable keys hold (application/privilege.py; checked
in the transaction that makes the change, with the account's row locked). The
permissions of a new key must be among the caller's own and within the company
ceiling (domain/access.py). Revoking a key (or deleting its service account)
revokes the tokens exchanged from it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from cardinsa_foundation.context import Principal
from cardinsa_foundation.errors import (
    FailedPrecondition,
    InvalidArgument,
)
from cardinsa_foundation.models import check_etag, current_actor_id
from cardinsa_foundation.paging import OrderTerm, Page
from cardinsa_foundation.use_cases import (
    check_request_id,
    lookup_uuid,
    not_found,
    require_principal,
)
from cardinsa_identity.application.context import (
    IdentityContext,
    flush_unique,
    name_in_use,
    target_company,
)
from cardinsa_identity.application.privilege import require_may_act_on, service_account_power
from cardinsa_identity.application.revocations import revoke_sessions
from cardinsa_identity.domain.access import (
    COMPANY_CEILING,
    ApiKeySpec,
    ServiceAccountSpec,
    check_api_key_spec,
    check_service_account_spec,
)
from cardinsa_identity.domain.api_keys import new_api_key
from cardinsa_identity.domain.permissions import ALL_PERMISSIONS
from cardinsa_identity.repository import service_accounts as repo
from cardinsa_identity.repository.idempotency import claim
from cardinsa_identity.repository.models import ApiKeyRow, ServiceAccountRow

__all__ = ["CREATE_SERVICE_ACCOUNT", "ServiceAccountUseCases"]

CREATE_SERVICE_ACCOUNT = "CreateServiceAccount"


class ServiceAccountUseCases:
    """Use cases of service accounts and API keys; one transaction per call, audited in it."""

    def __init__(self, ctx: IdentityContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------- service accounts

    async def create_service_account(
        self, spec: ServiceAccountSpec, *, request_id: str
    ) -> ServiceAccountRow:
        """Create a service account in the caller's company, or in the company a
        platform admin names in ``service_account.company_id``."""
        principal = require_principal()
        company = target_company(principal, spec.company_id, "service_account.company_id")
        violations = check_service_account_spec(spec) + check_request_id(request_id)
        if violations:
            raise InvalidArgument("the service account is not valid", field_violations=violations)

        duplicate = name_in_use("service account", "service_account.name", spec.name)
        account_id = uuid.uuid4()
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            seen = await claim(
                session, company, CREATE_SERVICE_ACCOUNT, request_id, str(account_id), spec
            )
            if seen is not None:
                return await self._service_account(session, company, seen)
            if await repo.service_account_name_taken(session, company, spec.name):
                raise duplicate
            account = ServiceAccountRow(
                id=account_id,
                company_id=company,
                name=spec.name,
                description=spec.description,
            )
            session.add(account)
            # A concurrent create of the same name won the race: SERVICE_ACCOUNT_EXISTS.
            await flush_unique(session, duplicate)
            await self.ctx.audit.record(
                session,
                action="service_account.create",
                entity_type="service_account",
                entity_id=account.id,
                company_id=company,
                changed_fields=["name", "description"],
                detail={"name": account.name},
            )
            return account

    async def get_service_account(self, account_id: str) -> ServiceAccountRow:
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self._service_account(session, company, account_id)

    async def list_service_accounts(
        self, *, page_size: int, page_token: str, show_deleted: bool
    ) -> Page[ServiceAccountRow]:
        principal = require_principal()
        company = target_company(principal, "")
        stmt = repo.list_service_accounts_query(company, show_deleted=show_deleted)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            return await self.ctx.page(
                session,
                stmt,
                order=[OrderTerm(ServiceAccountRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                show_deleted=show_deleted,
                company_id=str(company),
            )

    async def delete_service_account(self, account_id: str, etag: str) -> ServiceAccountRow:
        """Soft-delete a service account and revoke its open API keys: they stop
        working at once, and so do the tokens already exchanged with them
        (revocations). Deleting a deleted account returns it unchanged."""
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            account = await self._service_account(session, company, account_id, lock=True)
            await self._require_account_power(session, principal, account)
            check_etag(account, etag)
            if account.delete_time is None:
                now = datetime.now(UTC)
                account.soft_delete(now)
                key_ids = await repo.revoke_account_keys(session, company, account.id, now)
                await session.flush()
                await revoke_sessions(session, key_ids, "service_account.delete")
                await self.ctx.audit.record(
                    session,
                    action="service_account.delete",
                    entity_type="service_account",
                    entity_id=account.id,
                    company_id=company,
                    changed_fields=["delete_time"],
                    detail={
                        "name": account.name,
                        "keys_revoked": len(key_ids),
                    },
                )
            return account

    @staticmethod
    async def _require_account_power(
        session: AsyncSession, principal: Principal, account: ServiceAccountRow
    ) -> None:
        """The caller must hold every permission the account's usable keys hold."""
        power = await service_account_power(session, account.company_id, account.id)
        require_may_act_on(principal, power, resource="service account")

    async def _service_account(
        self, session: AsyncSession, company: uuid.UUID, account_id: str, *, lock: bool = False
    ) -> ServiceAccountRow:
        key = lookup_uuid(account_id)
        account = await repo.find_service_account(session, company, key, lock=lock) if key else None
        if account is None:
            raise not_found("service account", account_id)
        return account

    # --------------------------------------------------------------- API keys

    async def create_api_key(self, account_id: str, spec: ApiKeySpec) -> tuple[ApiKeyRow, str]:
        """Issue a key to a service account of the caller's company.

        Returns the stored key and the full secret key (``cdk_<prefix>_<secret>``),
        which exists only in this answer: the database keeps the prefix and the
        SHA-256 of the secret. The key's permissions must be within the caller's
        own (and the company ceiling), and so must the account's usable keys'
        (nobody acts on an account more privileged than themselves).
        """
        principal = require_principal()
        company = target_company(principal, "")
        now = datetime.now(UTC)
        max_lifetime = timedelta(seconds=self.ctx.settings.api_key_max_lifetime_s)
        violations = check_api_key_spec(
            spec,
            held=principal.permissions,
            now=now,
            ceiling=ALL_PERMISSIONS if principal.is_platform_admin else COMPANY_CEILING,
            max_lifetime=max_lifetime,
        )
        if violations:
            raise InvalidArgument("the API key is not valid", field_violations=violations)
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            account = await self._service_account(session, company, account_id, lock=True)
            await self._require_account_power(session, principal, account)
            if account.delete_time is not None:
                raise FailedPrecondition(
                    "the service account is deleted",
                    reason="SERVICE_ACCOUNT_DELETED",
                    metadata={"service_account_id": str(account.id)},
                )
            issued = new_api_key()
            key = ApiKeyRow(
                id=uuid.uuid4(),
                company_id=company,
                service_account_id=account.id,
                prefix=issued.prefix,
                secret_hash=issued.secret_hash,
                display_name=spec.display_name,
                permissions=sorted(spec.permissions),
                # No expiry asked for: the longest allowed (no key lives forever).
                expire_time=spec.expire_time or now + max_lifetime,
                created_by=current_actor_id(),
            )
            session.add(key)
            await session.flush()
            await self.ctx.audit.record(
                session,
                action="api_key.create",
                entity_type="api_key",
                entity_id=key.id,
                company_id=company,
                changed_fields=["display_name", "permissions", "expire_time"],
                detail={
                    "service_account_id": str(account.id),
                    "prefix": key.prefix,
                    "permissions": sorted(key.permissions),
                    "expire_time": key.expire_time,
                },
            )
            return key, issued.full_key

    async def list_api_keys(
        self, account_id: str, *, page_size: int, page_token: str
    ) -> Page[ApiKeyRow]:
        """Keys of a service account, newest first (revoked and expired ones too)."""
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            account = await self._service_account(session, company, account_id)
            await self._require_account_power(session, principal, account)
            stmt = repo.list_api_keys_query(company, account.id)
            return await self.ctx.page(
                session,
                stmt,
                order=[OrderTerm(ApiKeyRow.create_time, True)],
                page_size=page_size,
                page_token=page_token,
                parent=str(account.id),
                company_id=str(company),
            )

    async def revoke_api_key(self, account_id: str, key_id: str) -> ApiKeyRow:
        """Revoke a key at once; revoking a revoked key returns it unchanged."""
        principal = require_principal()
        company = target_company(principal, "")
        async with self.ctx.db.unit_of_work(company_id=company) as session:
            account = await self._service_account(session, company, account_id, lock=True)
            await self._require_account_power(session, principal, account)
            key_uuid = lookup_uuid(key_id)
            key = (
                await repo.find_api_key(session, company, account.id, key_uuid, lock=True)
                if key_uuid is not None
                else None
            )
            if key is None:
                raise not_found("api key", key_id)
            if key.revoke_time is None:
                key.revoke_time = datetime.now(UTC)
                await session.flush()
                await revoke_sessions(session, [key.id], "api_key.revoke")
                await self.ctx.audit.record(
                    session,
                    action="api_key.revoke",
                    entity_type="api_key",
                    entity_id=key.id,
                    company_id=company,
                    changed_fields=["revoke_time"],
                    detail={"service_account_id": str(account.id), "prefix": key.prefix},
                )
            return key
