"""Audio-visual segmentation: AVSBench clips, per-frame masks by source, mask decisions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "avs_clips",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subset", sa.String(8), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.UniqueConstraint("subset", "name", name="uq_avs_clip"),
    )
    op.create_index("ix_avs_clips_split", "avs_clips", ["split"])
    op.create_table(
        "avs_masks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("avs_clips.id", ondelete="CASCADE"), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("png", sa.LargeBinary(), nullable=True),
        sa.Column("status", sa.String(12), nullable=True),
        sa.Column("origin", sa.String(80), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("clip_id", "frame", "source", name="uq_avs_mask"),
    )
    op.create_index("ix_avs_masks_source", "avs_masks", ["source"])
    op.create_table(
        "avs_mask_edits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("avs_clips.id", ondelete="CASCADE"), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("before", sa.String(12), nullable=True),
        sa.Column("after", sa.String(12), nullable=True),
        sa.Column("origin", sa.String(80), nullable=True),
        sa.Column("annotator", sa.String(128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_avs_mask_edits_clip_id", "avs_mask_edits", ["clip_id"])


def downgrade() -> None:
    op.drop_index("ix_avs_mask_edits_clip_id", table_name="avs_mask_edits")
    op.drop_table("avs_mask_edits")
    op.drop_index("ix_avs_masks_source", table_name="avs_masks")
    op.drop_table("avs_masks")
    op.drop_index("ix_avs_clips_split", table_name="avs_clips")
    op.drop_table("avs_clips")
