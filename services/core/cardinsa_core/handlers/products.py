"""ProductService servicer."""

from __future__ import annotations

from typing import Any

from cardinsa.core.v1 import product_service_pb2 as pb
from cardinsa.core.v1 import product_service_pb2_grpc, resources_pb2
from cardinsa_core.application.products import ProductUseCases
from cardinsa_core.handlers.convert import (
    mask_paths,
    product_input,
    product_to_proto,
    product_version_to_proto,
)


class ProductServicer(product_service_pb2_grpc.ProductServiceServicer):
    def __init__(self, products: ProductUseCases) -> None:
        self.products = products

    async def CreateProduct(
        self, request: pb.CreateProductRequest, context: Any
    ) -> resources_pb2.Product:
        view = await self.products.create(
            product_input(request.product), request_id=request.request_id
        )
        return product_to_proto(view)

    async def GetProduct(
        self, request: pb.GetProductRequest, context: Any
    ) -> resources_pb2.Product:
        return product_to_proto(await self.products.get(request.product_id))

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: Any
    ) -> pb.ListProductsResponse:
        page = await self.products.list_products(
            page_size=request.page_size,
            page_token=request.page_token,
            filter=request.filter,
            order_by=request.order_by,
            show_deleted=request.show_deleted,
        )
        return pb.ListProductsResponse(
            products=[product_to_proto(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateProduct(
        self, request: pb.UpdateProductRequest, context: Any
    ) -> resources_pb2.Product:
        view = await self.products.update(
            request.product.id,
            product_input(request.product),
            mask_paths(request.update_mask),
            request.product.etag,
        )
        return product_to_proto(view)

    async def DeleteProduct(
        self, request: pb.DeleteProductRequest, context: Any
    ) -> resources_pb2.Product:
        return product_to_proto(await self.products.delete(request.product_id, request.etag))

    async def UndeleteProduct(
        self, request: pb.UndeleteProductRequest, context: Any
    ) -> resources_pb2.Product:
        return product_to_proto(await self.products.undelete(request.product_id, request.etag))

    async def ActivateProduct(
        self, request: pb.ActivateProductRequest, context: Any
    ) -> resources_pb2.Product:
        view = await self.products.activate(request.product_id, request.etag, request.request_id)
        return product_to_proto(view)

    async def RetireProduct(
        self, request: pb.RetireProductRequest, context: Any
    ) -> resources_pb2.Product:
        view = await self.products.retire(request.product_id, request.etag, request.request_id)
        return product_to_proto(view)

    async def ListProductVersions(
        self, request: pb.ListProductVersionsRequest, context: Any
    ) -> pb.ListProductVersionsResponse:
        page = await self.products.list_versions(
            request.product_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListProductVersionsResponse(
            product_versions=[product_version_to_proto(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def GetProductVersion(
        self, request: pb.GetProductVersionRequest, context: Any
    ) -> resources_pb2.ProductVersion:
        view = await self.products.get_version(request.product_id, request.version)
        return product_version_to_proto(view)
