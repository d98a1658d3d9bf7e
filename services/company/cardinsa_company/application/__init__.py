"""Use cases of the company service: one transaction each, audited in the same transaction."""
