"""AccessService servicer: roles, role bindings, service accounts, API keys."""

from __future__ import annotations

from typing import Any

from cardinsa.identity.v1 import access_service_pb2, access_service_pb2_grpc, resources_pb2
from cardinsa_foundation.errors import FieldViolation, InvalidArgument
from cardinsa_identity.application.access import AccessUseCases
from cardinsa_identity.domain.access import ApiKeySpec, RoleSpec, ServiceAccountSpec
from cardinsa_identity.handlers.convert import (
    api_key_to_proto,
    optional_time,
    role_binding_to_proto,
    role_to_proto,
    service_account_to_proto,
)
from cardinsa_identity.repository.models import RoleRow
from cardinsa_identity.repository.roles import role_permissions


def _role(row: RoleRow) -> resources_pb2.Role:
    # Built-in roles show what they grant today (from code), as tokens do.
    return role_to_proto(row, sorted(role_permissions(row)) if row.built_in else None)


def _role_spec(role: resources_pb2.Role) -> RoleSpec:
    return RoleSpec(
        name=role.name, description=role.description, permissions=tuple(role.permissions)
    )


class AccessServicer(access_service_pb2_grpc.AccessServiceServicer):
    def __init__(self, access: AccessUseCases) -> None:
        self.access = access

    # ------------------------------------------------------------------ roles

    async def CreateRole(
        self, request: access_service_pb2.CreateRoleRequest, context: Any
    ) -> resources_pb2.Role:
        return _role(
            await self.access.create_role(_role_spec(request.role), request_id=request.request_id)
        )

    async def GetRole(
        self, request: access_service_pb2.GetRoleRequest, context: Any
    ) -> resources_pb2.Role:
        return _role(await self.access.get_role(request.role_id))

    async def ListRoles(
        self, request: access_service_pb2.ListRolesRequest, context: Any
    ) -> access_service_pb2.ListRolesResponse:
        page = await self.access.list_roles(
            page_size=request.page_size,
            page_token=request.page_token,
            show_deleted=request.show_deleted,
        )
        return access_service_pb2.ListRolesResponse(
            roles=[_role(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def UpdateRole(
        self, request: access_service_pb2.UpdateRoleRequest, context: Any
    ) -> resources_pb2.Role:
        return _role(
            await self.access.update_role(
                request.role.id,
                _role_spec(request.role),
                list(request.update_mask.paths),
                request.role.etag,
            )
        )

    async def DeleteRole(
        self, request: access_service_pb2.DeleteRoleRequest, context: Any
    ) -> resources_pb2.Role:
        return _role(await self.access.delete_role(request.role_id, request.etag))

    # ---------------------------------------------------------- role bindings

    async def CreateRoleBinding(
        self, request: access_service_pb2.CreateRoleBindingRequest, context: Any
    ) -> resources_pb2.RoleBinding:
        binding = request.role_binding
        return role_binding_to_proto(
            await self.access.create_role_binding(binding.user_id, binding.role_id)
        )

    async def ListRoleBindings(
        self, request: access_service_pb2.ListRoleBindingsRequest, context: Any
    ) -> access_service_pb2.ListRoleBindingsResponse:
        page = await self.access.list_role_bindings(
            page_size=request.page_size, page_token=request.page_token, user_id=request.user_id
        )
        return access_service_pb2.ListRoleBindingsResponse(
            role_bindings=[role_binding_to_proto(b) for b in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteRoleBinding(
        self, request: access_service_pb2.DeleteRoleBindingRequest, context: Any
    ) -> resources_pb2.RoleBinding:
        return role_binding_to_proto(await self.access.delete_role_binding(request.role_binding_id))

    # ------------------------------------------------------- service accounts

    async def CreateServiceAccount(
        self, request: access_service_pb2.CreateServiceAccountRequest, context: Any
    ) -> resources_pb2.ServiceAccount:
        account = request.service_account
        spec = ServiceAccountSpec(
            name=account.name, description=account.description, company_id=account.company_id
        )
        return service_account_to_proto(
            await self.access.create_service_account(spec, request_id=request.request_id)
        )

    async def GetServiceAccount(
        self, request: access_service_pb2.GetServiceAccountRequest, context: Any
    ) -> resources_pb2.ServiceAccount:
        return service_account_to_proto(
            await self.access.get_service_account(request.service_account_id)
        )

    async def ListServiceAccounts(
        self, request: access_service_pb2.ListServiceAccountsRequest, context: Any
    ) -> access_service_pb2.ListServiceAccountsResponse:
        page = await self.access.list_service_accounts(
            page_size=request.page_size,
            page_token=request.page_token,
            show_deleted=request.show_deleted,
        )
        return access_service_pb2.ListServiceAccountsResponse(
            service_accounts=[service_account_to_proto(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    async def DeleteServiceAccount(
        self, request: access_service_pb2.DeleteServiceAccountRequest, context: Any
    ) -> resources_pb2.ServiceAccount:
        return service_account_to_proto(
            await self.access.delete_service_account(request.service_account_id, request.etag)
        )

    # --------------------------------------------------------------- API keys

    async def CreateApiKey(
        self, request: access_service_pb2.CreateApiKeyRequest, context: Any
    ) -> access_service_pb2.CreateApiKeyResponse:
        key = request.api_key
        try:
            expire_time = optional_time(key, "expire_time")
        except InvalidArgument:
            raise InvalidArgument(
                "api_key.expire_time is out of range",
                field_violations=[FieldViolation("api_key.expire_time", "out of range")],
            ) from None
        spec = ApiKeySpec(
            display_name=key.display_name,
            permissions=tuple(key.permissions),
            expire_time=expire_time,
        )
        row, secret = await self.access.create_api_key(request.service_account_id, spec)
        return access_service_pb2.CreateApiKeyResponse(api_key=api_key_to_proto(row), secret=secret)

    async def ListApiKeys(
        self, request: access_service_pb2.ListApiKeysRequest, context: Any
    ) -> access_service_pb2.ListApiKeysResponse:
        page = await self.access.list_api_keys(
            request.service_account_id, page_size=request.page_size, page_token=request.page_token
        )
        return access_service_pb2.ListApiKeysResponse(
            api_keys=[api_key_to_proto(k) for k in page.items],
            next_page_token=page.next_page_token,
        )

    async def RevokeApiKey(
        self, request: access_service_pb2.RevokeApiKeyRequest, context: Any
    ) -> resources_pb2.ApiKey:
        return api_key_to_proto(
            await self.access.revoke_api_key(request.service_account_id, request.api_key_id)
        )
