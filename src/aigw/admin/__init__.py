"""Administration: the token CLI (and later the admin REST API and web UI)."""
