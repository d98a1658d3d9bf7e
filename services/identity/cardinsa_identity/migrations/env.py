"""Alembic environment of the identity schema (run through cardinsa_foundation.migrations)."""

from cardinsa_foundation.migrations import run_env
from cardinsa_identity.repository.models import Base

run_env(Base.metadata)
