"""gRPC servicers of the company service and the protobuf ⇄ domain conversions."""
