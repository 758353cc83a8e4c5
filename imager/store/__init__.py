"""The registry: SQLAlchemy models, migrations and repositories."""
