"""gRPC servicers of identity: translate protobuf to use-case calls and back, nothing else."""
