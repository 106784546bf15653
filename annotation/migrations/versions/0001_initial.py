"""Initial label store: clips, label tracks, reviews, edit history, feature sets.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clips",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("filename", sa.String(128), nullable=False),
        sa.Column("video_id", sa.String(11), nullable=False),
        sa.Column("split", sa.String(16), nullable=False),
        sa.Column("weak_labels", sa.String(512), nullable=False),
        sa.Column("weak_mask", sa.Integer(), nullable=False),
        sa.Column("video_path", sa.Text(), nullable=True),
        sa.UniqueConstraint("filename"),
    )
    op.create_index("ix_clips_video_id", "clips", ["video_id"])
    op.create_index("ix_clips_split", "clips", ["split"])
    op.create_table(
        "label_tracks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("clips.id", ondelete="CASCADE"), nullable=False),
        sa.Column("track", sa.String(8), nullable=False),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("cells", sa.LargeBinary(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=True),
        sa.UniqueConstraint("clip_id", "track", "source", name="uq_label_track"),
    )
    op.create_index("ix_label_tracks_source_track", "label_tracks", ["source", "track", "positives"])
    op.create_table(
        "reviews",
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("annotator", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_reviews_status", "reviews", ["status"])
    op.create_table(
        "edits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("clips.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("track", sa.String(8), nullable=True),
        sa.Column("source", sa.String(80), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("annotator", sa.String(128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_edits_clip_id", "edits", ["clip_id"])
    op.create_table(
        "feature_sets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("shape", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("feature_sets")
    op.drop_index("ix_edits_clip_id", table_name="edits")
    op.drop_table("edits")
    op.drop_index("ix_reviews_status", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index("ix_label_tracks_source_track", table_name="label_tracks")
    op.drop_table("label_tracks")
    op.drop_index("ix_clips_split", table_name="clips")
    op.drop_index("ix_clips_video_id", table_name="clips")
    op.drop_table("clips")
