"""Calls core makes to other services, through their generated gRPC stubs."""
