"""Every tenant table's primary key, unique constraints and foreign keys between tenant tables
include program_id (architecture.md, "Tenancy"), so that on Citus the tables distribute by
program_id, co-located, and a statement about one program routes to one shard.

program_id is appended to each key rather than put first: lookups by the key's own columns
(``WHERE id = ...``, ``WHERE member_id = ...``) keep using the same index on one PostgreSQL,
and Citus only needs the distribution column to be part of the key. A referral's order loses
ON DELETE SET NULL, which Citus refuses on a key that includes the distribution column (it
would null program_id too): nothing deletes an order but its program's deletion, which deletes
the referral in the same statement. A coupon's order and reward lose it for the same reason:
orders are never deleted, and a reward's DELETE only deactivates it (api.md), so both go only
with their program, and its coupons with them.

accounts' foreign key to its tier loses ON UPDATE CASCADE (a tier's key cannot change).

The triggers that kept programs.config_version (migration 0011) go: the ones on earn_rules and
tiers wrote programs, a reference table on Citus, from rows of distributed tables, which Citus
does not run safely. The services bump it in the same transaction instead
(app/services/programs/config_version.py).

Each key is rebuilt under an exclusive lock on its table; on a large database run it in a
maintenance window.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 18:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> the primary key's columns before this revision (program_id is appended).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "accounts": ("member_id",),
    "birthday_bonuses": ("member_id", "year"),
    "birthday_reminders": ("member_id", "birthday_on"),
    "campaign_targetings": ("id",),
    "campaigns": ("id",),
    "coupons": ("id",),
    "earn_rules": ("id",),
    "events": ("id",),
    "holds": ("id",),
    "import_rows": ("import_id", "line"),
    "imports": ("id",),
    "member_feedback": ("id",),
    "member_insights": ("member_id",),
    "members": ("id",),
    "order_release_queue": ("member_id", "order_pk"),
    "orders": ("id",),
    "point_entries": ("id",),
    "point_lots": ("id",),
    "point_releases": ("entry_id",),
    "points_expiring_reminders": ("member_id", "expires_at"),
    "referrals": ("id",),
    "refunds": ("id",),
    "reward_redemptions": ("id",),
    "rewards": ("id",),
    "tier_changes": ("id",),
    "tiers": ("id",),
    "webhook_deliveries": ("id",),
    "webhook_endpoints": ("id",),
}

# (table, column, referred table, ON DELETE before, ON DELETE after) for every foreign key
# between tenant tables; each refers to the referred table's id (or a member's id).
FOREIGN_KEYS: list[tuple[str, str, str, str | None, str | None]] = [
    ("accounts", "member_id", "members", "CASCADE", "CASCADE"),
    ("birthday_bonuses", "entry_id", "point_entries", "CASCADE", "CASCADE"),
    ("birthday_bonuses", "member_id", "members", "CASCADE", "CASCADE"),
    ("birthday_reminders", "member_id", "members", "CASCADE", "CASCADE"),
    ("coupons", "member_id", "members", "CASCADE", "CASCADE"),
    ("coupons", "order_pk", "orders", "SET NULL", None),
    ("coupons", "redemption_id", "reward_redemptions", "CASCADE", "CASCADE"),
    ("coupons", "reward_id", "rewards", "SET NULL", None),
    ("holds", "member_id", "members", "CASCADE", "CASCADE"),
    ("member_feedback", "member_id", "members", "CASCADE", "CASCADE"),
    ("member_insights", "member_id", "members", "CASCADE", "CASCADE"),
    ("orders", "member_id", "members", "CASCADE", "CASCADE"),
    ("point_entries", "hold_id", "holds", None, None),
    ("point_entries", "referral_id", "referrals", None, None),
    ("points_expiring_reminders", "member_id", "members", "CASCADE", "CASCADE"),
    ("referrals", "order_pk", "orders", "SET NULL", None),
    ("referrals", "referee_id", "members", "CASCADE", "CASCADE"),
    ("referrals", "referrer_id", "members", "CASCADE", "CASCADE"),
    ("refunds", "order_pk", "orders", "CASCADE", "CASCADE"),
    ("reward_redemptions", "member_id", "members", "CASCADE", "CASCADE"),
    ("reward_redemptions", "reward_id", "rewards", "CASCADE", "CASCADE"),
    ("tier_changes", "member_id", "members", "CASCADE", "CASCADE"),
    ("webhook_deliveries", "endpoint_id", "webhook_endpoints", "CASCADE", "CASCADE"),
    ("webhook_deliveries", "event_id", "events", "CASCADE", "CASCADE"),
]

# (table, name before, columns before, name after) for every unique constraint of a tenant
# table that lacked program_id (it is appended). The campaign targetings' name is shortened:
# the conventional one would pass PostgreSQL's 63 characters.
UNIQUE_KEYS: list[tuple[str, str, tuple[str, ...], str]] = [
    (
        "webhook_deliveries",
        "uq_webhook_deliveries_endpoint_id_event_id",
        ("endpoint_id", "event_id"),
        "uq_webhook_deliveries_endpoint_id_event_id_program_id",
    ),
    (
        "campaign_targetings",
        "uq_campaign_targetings_campaign_id_member_id_run_number",
        ("campaign_id", "member_id", "run_number"),
        "uq_campaign_targetings_campaign_member_run_program",
    ),
]


def _referred_key(table: str) -> tuple[str, ...]:
    return PRIMARY_KEYS[table]


def _foreign_key(
    table: str, column: str, referred: str, on_delete: str | None, with_program: bool
) -> str:
    columns = f"{column}, program_id" if with_program else column
    referred_columns = ", ".join(_referred_key(referred)) + (", program_id" if with_program else "")
    action = f" ON DELETE {on_delete}" if on_delete else ""
    return (
        f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_{column}_{referred} "
        f"FOREIGN KEY ({columns}) REFERENCES {referred} ({referred_columns}){action}"
    )


def _primary_key(table: str, with_program: bool) -> str:
    columns = ", ".join(PRIMARY_KEYS[table]) + (", program_id" if with_program else "")
    return (
        f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, "
        f"ADD CONSTRAINT pk_{table} PRIMARY KEY ({columns})"
    )


def _rebuild(with_program: bool) -> None:
    # Foreign keys depend on the keys they refer to: drop them, rebuild the keys, add them back.
    for table, column, referred, _, _ in FOREIGN_KEYS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT fk_{table}_{column}_{referred}")
    for table in PRIMARY_KEYS:
        op.execute(_primary_key(table, with_program))
    for table, name_before, columns, name_after in UNIQUE_KEYS:
        old, new = (name_before, name_after) if with_program else (name_after, name_before)
        key = ", ".join(columns) + (", program_id" if with_program else "")
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {old}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {new} UNIQUE ({key})")
    for table, column, referred, before, after in FOREIGN_KEYS:
        on_delete = after if with_program else before
        op.execute(_foreign_key(table, column, referred, on_delete, with_program))


def _drop_config_version_triggers() -> None:
    for table in ("earn_rules", "tiers"):
        op.execute(f"DROP TRIGGER {table}_config_version ON {table}")
    op.execute("DROP FUNCTION patron_bump_owner_config_version()")
    op.execute("DROP TRIGGER programs_config_version ON programs")
    op.execute("DROP FUNCTION patron_bump_config_version()")


def _create_config_version_triggers() -> None:
    """As migration 0011 made them."""
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


def _account_tier_key(on_update: str) -> None:
    op.execute("ALTER TABLE accounts DROP CONSTRAINT fk_accounts_tier")
    op.execute(
        "ALTER TABLE accounts ADD CONSTRAINT fk_accounts_tier FOREIGN KEY (program_id, tier_key) "
        f"REFERENCES tiers (program_id, key){on_update}"
    )


def upgrade() -> None:
    _rebuild(with_program=True)
    _drop_config_version_triggers()
    # A tier's key never changes (the API has no way to), so ON UPDATE CASCADE never ran; Citus
    # refuses it on a foreign key that includes the distribution column.
    _account_tier_key("")


def downgrade() -> None:
    _account_tier_key(" ON UPDATE CASCADE")
    _create_config_version_triggers()
    _rebuild(with_program=False)
