"""Dataset and review statistics computed in SQL (cheap on 10,000+ clips)."""
from __future__ import annotations

from sqlalchemy import Engine, and_, func, select

from annotation.models import Clip, LabelTrack, Review
from annotation.store import REVIEW_STATUSES, SPLITS


def dataset_stats(engine: Engine) -> dict:
    c, t, r = Clip.__table__, LabelTrack.__table__, Review.__table__
    with engine.connect() as conn:
        clips = dict(conn.execute(select(c.c.split, func.count()).group_by(c.c.split)).all())
        empty = dict(
            conn.execute(
                select(c.c.split, func.count())
                .select_from(t.join(c, t.c.clip_id == c.c.id))
                .where(and_(t.c.source == "pseudo", t.c.track == "visual", t.c.positives == 0))
                .group_by(c.c.split)
            ).all()
        )
        reviews = dict(conn.execute(select(r.c.status, func.count()).group_by(r.c.status)).all())
        unreviewed = conn.execute(
            select(func.count()).select_from(c).where(~c.c.id.in_(select(r.c.clip_id)))
        ).scalar_one()
        tracks: dict[str, dict[str, int]] = {}
        for source, track, count in conn.execute(
            select(t.c.source, t.c.track, func.count()).group_by(t.c.source, t.c.track)
        ):
            tracks.setdefault(source, {})[track] = count
    review = {status: reviews.get(status, 0) for status in REVIEW_STATUSES}
    review["pending"] += unreviewed
    splits = list(SPLITS) + sorted(set(clips) - set(SPLITS))
    return {
        "clips": {s: clips.get(s, 0) for s in splits},
        "empty_visual_pseudo": {s: empty.get(s, 0) for s in splits},
        "review": review,
        "tracks": tracks,
    }


def format_stats(stats: dict) -> str:
    """Aligned text: one row per quantity, the label column as wide as the longest label."""
    rows = [("clips", stats["clips"]), ("empty visual", stats["empty_visual_pseudo"]), ("review", stats["review"])]
    rows += [(f"tracks {source}", dict(sorted(tracks.items()))) for source, tracks in sorted(stats["tracks"].items())]
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(label.ljust(width) + "  ".join(f"{k}: {v}" for k, v in values.items()) for label, values in rows)
