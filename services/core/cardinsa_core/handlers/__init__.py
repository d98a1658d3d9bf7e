"""gRPC servicers of core: protobuf in, use case, protobuf out."""
