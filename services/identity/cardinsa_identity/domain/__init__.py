"""Identity's domain: pure rules, no transport and no database.

Modules: `passwords` (hashing), `password_policy`, `permissions` (catalogue and
built-in roles), `users` (lifecycle and profile rules), `tokens` (access tokens,
refresh and reset tokens), `signing_keys` (keys, encryption at rest, rotation),
`api_keys`. Nothing here imports grpc, protobuf or SQLAlchemy itself (errors come
from `cardinsa_foundation.errors`, which does); handlers translate
protobuf to these types and repositories store them.
"""
