"""Everything torch and numeric: metrics, models, training. Never imports Qt."""
