"""Presence: which annotator has which clip open (heartbeat rows), for "being edited by NAME".

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "presence",
        sa.Column("session", sa.String(64), primary_key=True),
        sa.Column("annotator", sa.String(128), nullable=False),
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("clips.id", ondelete="SET NULL"), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_presence_clip_id", "presence", ["clip_id"])


def downgrade() -> None:
    op.drop_index("ix_presence_clip_id", table_name="presence")
    op.drop_table("presence")
