"""Core's domain: the insurance rules, no transport and no database.

Modules: `money`
(Decimal amounts with an ISO 4217 currency), `policyholders` (parties,
dependents, national-id masking), `products` (catalogue, coverages, versions),
`policies` (quote → bind → in force → endorse / renew / cancel / reinstate /
lapse / expire), `claims` (first notice of loss → review → approve / deny →
pay → close / reopen, approval authority bands) and `numbering` (policy and
claim numbers). Lifecycles are tables of `cardinsa_foundation.lifecycle`.
Nothing here imports grpc, protobuf or SQLAlchemy itself
(errors come from `cardinsa_foundation.errors`, which does); handlers translate
protobuf to these types and the application layer stores them.
"""
