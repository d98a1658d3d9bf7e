"""Cardinsa foundation: what every Cardinsa gRPC service is built on.

One module per concern: ``config``, ``context``, ``logging``, ``errors``, ``db``,
``local_postgres``, ``models``, ``audit``, ``paging``, ``filtering``, ``auth``,
``interceptors``, ``metrics``, ``server``, ``server_info``.
This package never imports a service (enforced by import-linter).
"""

__version__ = "0.1.0"
