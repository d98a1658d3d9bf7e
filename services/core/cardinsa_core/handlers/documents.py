"""DocumentService servicer: documents as PDF in a ``google.api.HttpBody``."""

from __future__ import annotations

from typing import Any

from google.api import httpbody_pb2

from cardinsa.core.v1 import document_service_pb2 as pb
from cardinsa.core.v1 import document_service_pb2_grpc
from cardinsa_core.application.documents import DocumentUseCases, IssuedDocument

PDF = "application/pdf"


def _body(document: IssuedDocument) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type=PDF, data=document.content)


class DocumentServicer(document_service_pb2_grpc.DocumentServiceServicer):
    def __init__(self, documents: DocumentUseCases) -> None:
        self.documents = documents

    async def GetPolicySchedule(
        self, request: pb.GetPolicyScheduleRequest, context: Any
    ) -> httpbody_pb2.HttpBody:
        return _body(await self.documents.policy_schedule(request.policy_id, request.locale))

    async def GetClaimDecisionLetter(
        self, request: pb.GetClaimDecisionLetterRequest, context: Any
    ) -> httpbody_pb2.HttpBody:
        return _body(await self.documents.claim_decision(request.claim_id, request.locale))

    async def GetInvoiceDocument(
        self, request: pb.GetInvoiceDocumentRequest, context: Any
    ) -> httpbody_pb2.HttpBody:
        return _body(
            await self.documents.invoice_document(
                request.policy_id, request.invoice_id, request.locale
            )
        )
