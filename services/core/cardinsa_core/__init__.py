"""The core service: policyholders, products, policies and claims (``cardinsa.core.v1``).

Layout: ``handlers`` (gRPC servicers, protobuf ⇄ application values) →
``application`` (use cases: one unit of work per call, tenancy, request ids,
audit) → ``domain`` (lifecycles as tables, money, rules; no grpc, protobuf or
SQLAlchemy) → ``repository`` (tables of the ``core`` schema). ``main`` wires
everything (on the foundation's service host, which also makes the calls to
other services).

Decisions worth knowing:

- Tenancy: every call acts in the caller's own company (from the token);
  core has no cross-tenant path, platform admins included. Another company's
  id, a malformed id and an unknown id give the same NOT_FOUND. Row-level
  security backs every table.
- Lifecycles: illegal transitions are FAILED_PRECONDITION with reason
  INVALID_STATE_TRANSITION and metadata ``current_state`` / ``transition``,
  checked before any other rule of the transition.
- Concurrency: transitions lock the row (``FOR UPDATE``) and then check the
  etag, so of two calls with one etag exactly one wins and the other gets
  ABORTED (ETAG_MISMATCH). Request ids are claimed first in the transaction
  (``INSERT ... ON CONFLICT DO NOTHING``): a concurrent or later retry returns
  the resource as it is, a failed call leaves its id usable.
- Numbers: policy numbers (on bind) and claim numbers (on submit) come from a
  per-company counter row incremented with ``INSERT ... ON CONFLICT DO UPDATE
  ... RETURNING`` inside the same transaction: unique and gap-free.
- Approval outside the approver's band is PERMISSION_DENIED (reason
  APPROVAL_AUTHORITY_EXCEEDED), checked before the claim is read: it is the
  caller's authority that is missing, not the claim's state that is wrong.
- Money is Decimal + ISO 4217 currency in the domain, NUMERIC(19, 4) + a
  currency column in the database, google.type.Money on the wire.
"""
