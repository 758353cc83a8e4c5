"""Append-only tables: triggers refusing UPDATE and DELETE (and TRUNCATE on
PostgreSQL), so that a correction is a new row, never an edit. They do not stop
someone who drops them: the hash chain of a ledger and a kept head catch that.

Used by the migrations of the registry's ledger (0002) and the portal's copy of the
stations' ledgers.
"""

from __future__ import annotations


def triggers(table: str, dialect: str, refused: str) -> list[str]:
    """The statements making `table` append-only on `dialect` ("sqlite",
    "postgresql"); `refused` is the error's text (no quote, no '%': it goes through
    the driver's paramstyle)."""
    if dialect == "sqlite":
        return [f"""CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table}
    BEGIN SELECT RAISE(ABORT, '{refused}: {op_name} refused'); END"""
                for op_name in ("UPDATE", "DELETE")]
    if dialect == "postgresql":
        return [
            f"""CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING MESSAGE = '{refused}: ' || TG_OP || ' refused';
    END $$""",
            f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()""",
        ]
    raise RuntimeError(f"no append-only triggers for the {dialect} database")
