"""Training runs and the probabilities of prediction runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(32), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("data_dir", sa.Text(), nullable=False),
        sa.Column("run_dir", sa.Text(), nullable=False),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("started_by", sa.String(128), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("metrics", sa.Text(), nullable=True),
        sa.Column("checkpoint", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "prediction_scores",
        sa.Column("clip_id", sa.Integer(), sa.ForeignKey("clips.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("source", sa.String(80), primary_key=True),
        sa.Column("audio", sa.LargeBinary(), nullable=False),
        sa.Column("visual", sa.LargeBinary(), nullable=False),
        sa.Column("video", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_prediction_scores_source", "prediction_scores", ["source"])


def downgrade() -> None:
    op.drop_index("ix_prediction_scores_source", table_name="prediction_scores")
    op.drop_table("prediction_scores")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_table("runs")
