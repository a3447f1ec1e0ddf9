"""programs.config_version: a number that changes whenever what an order earns could change
(the program's currency, earn rate or time zone, any earn rule, any tier), kept by triggers so
that no code path can forget it. The checkout caches a program's earning setup per process and
its order statement proceeds only while this number is the one the cache was read at.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "programs",
        sa.Column("config_version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
    )
    op.execute(
        """
        CREATE FUNCTION patron_bump_config_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF (NEW.currency, NEW.earn_rate, NEW.timezone)
               IS DISTINCT FROM (OLD.currency, OLD.earn_rate, OLD.timezone) THEN
                NEW.config_version := OLD.config_version + 1;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER programs_config_version BEFORE UPDATE ON programs "
        "FOR EACH ROW EXECUTE FUNCTION patron_bump_config_version()"
    )
    op.execute(
        """
        CREATE FUNCTION patron_bump_owner_config_version() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE programs SET config_version = config_version + 1
             WHERE id IN (NEW.program_id, OLD.program_id);
            RETURN NULL;
        END $$
        """
    )
    for table in ("earn_rules", "tiers"):
        op.execute(
            f"CREATE TRIGGER {table}_config_version AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION patron_bump_owner_config_version()"
        )


def downgrade() -> None:
    for table in ("earn_rules", "tiers"):
        op.execute(f"DROP TRIGGER {table}_config_version ON {table}")
    op.execute("DROP FUNCTION patron_bump_owner_config_version()")
    op.execute("DROP TRIGGER programs_config_version ON programs")
    op.execute("DROP FUNCTION patron_bump_config_version()")
    op.drop_column("programs", "config_version")
