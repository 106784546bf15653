"""Static assets: style sheets, icons, default settings."""
