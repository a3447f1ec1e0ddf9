"""Campaign runs in lanes: ``campaign_run_lanes`` holds, for each lane of a campaign's run
(members with ``member_id % lanes = lane``), the run it belongs to and how far it got, so that
the lanes of one run advance side by side instead of taking turns on the campaign row.

The index of a campaign's targetings becomes (program, campaign, member, targeted_at) with the
group: the results read each member's first targeting in member order from the index alone
instead of sorting every targeting of the campaign.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_run_lanes",
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("lane", sa.SmallInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("lanes", sa.SmallInteger(), nullable=False),
        sa.Column("run_number", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "lane >= 0 AND lane < lanes", name=op.f("ck_campaign_run_lanes_lane_in_range")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id", "program_id"],
            ["campaigns.id", "campaigns.program_id"],
            name=op.f("fk_campaign_run_lanes_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "campaign_id", "lane", "program_id", name=op.f("pk_campaign_run_lanes")
        ),
    )
    op.create_index(
        "ix_campaign_targetings_first_targeting",
        "campaign_targetings",
        ["program_id", "campaign_id", "member_id", "targeted_at"],
        unique=False,
        postgresql_include=["group"],
    )
    op.drop_index("ix_campaign_targetings_program_id_campaign_id", table_name="campaign_targetings")


def downgrade() -> None:
    op.create_index(
        "ix_campaign_targetings_program_id_campaign_id",
        "campaign_targetings",
        ["program_id", "campaign_id"],
        unique=False,
    )
    op.drop_index("ix_campaign_targetings_first_targeting", table_name="campaign_targetings")
    op.drop_table("campaign_run_lanes")
