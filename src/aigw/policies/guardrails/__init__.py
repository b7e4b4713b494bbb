"""Content policies (guardrails): checks on the text of every call and every result.

verdicts.py holds the values (verdict, context, run record); engine.py runs an endpoint's policies;
one module per kind (pii, keywords); streams.py applies them to streamed text; config.py parses the
`policies:` list and the per-endpoint `guardrails:` shorthand.
"""
