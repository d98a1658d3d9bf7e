"""Use cases of the identity service: each public coroutine is one transaction boundary."""
