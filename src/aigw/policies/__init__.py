"""Per-request policies: authentication, permissions, rate limits, guardrails (one module each)."""
