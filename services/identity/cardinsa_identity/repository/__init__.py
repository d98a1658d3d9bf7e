"""Persistence of the identity service: SQLAlchemy models and queries (schema ``identity``)."""
