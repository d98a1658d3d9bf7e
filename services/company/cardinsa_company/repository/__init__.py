"""The company schema: SQLAlchemy models (the only module that knows the tables)."""
