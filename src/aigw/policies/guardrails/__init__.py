"""Content policies (guardrails): checks on the text of every call and every result.

verdicts.py holds the values (verdict, context, run record) and the `Policy` interface; engine.py runs
an endpoint's policies on one phase; one module per kind: pii (with pii_detectors), keywords, judge
(also the judging the others share), screens (jailbreak, unsafe_content, topics), webhook, function
(the `python` kind); services.py is what the kinds that call out get from the gateway; streams.py
masks and checks streamed text; stream_guard.py chains an endpoint's result policies over one
streamed channel; config.py parses the `policies:` list and the per-endpoint `guardrails:` shorthand
and builds engines.
"""
