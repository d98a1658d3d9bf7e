"""Alembic environment of the core schema (run through cardinsa_foundation.migrations)."""

from cardinsa_core.repository.models import Base
from cardinsa_foundation.migrations import run_env

run_env(Base.metadata)
