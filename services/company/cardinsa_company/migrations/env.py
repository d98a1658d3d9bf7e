"""Alembic environment of the company schema (run through cardinsa_foundation.migrations)."""

from cardinsa_company.repository.models import Base
from cardinsa_foundation.migrations import run_env

run_env(Base.metadata)
