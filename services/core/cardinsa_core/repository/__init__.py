"""Core's tables (SQLAlchemy models) and the few SQL statements that are not plain ORM."""
