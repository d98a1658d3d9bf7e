"""Cardinsa foundation: what every Cardinsa gRPC service is built on.

One module per concern: ``config``, ``context``, ``logging``, ``errors``, ``db``,
``local_postgres``, ``models``, ``audit``, ``paging``, ``filtering``, ``auth``,
``interceptors``, ``metrics``, ``server``, ``server_info``, ``build``.
This package never imports a service (enforced by import-linter).
"""

from cardinsa_foundation.build import package_version

#: The installed distribution's version (package metadata).
__version__ = package_version(__name__)
