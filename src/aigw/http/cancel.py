"""Why the HTTP server cancelled a request's task, carried as the cancellation's message, so the app
can account for the request with the status its client got (or would have got).

The server cancels a request whose client left before its response began (nobody would read the
answer: a non-streamed upstream call is closed rather than paid for), one whose body stopped
arriving (it answers 408 itself), and, at the end of a graceful shutdown, whatever still runs
(the app may still answer 503).
"""

from __future__ import annotations

import asyncio

CLIENT_GONE = "aigw.http: the client closed the connection"
BODY_TIMEOUT = "aigw.http: the request body did not arrive in time"
SHUTTING_DOWN = "aigw.http: the server is shutting down"

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before its answer

_STATUS = {CLIENT_GONE: CLIENT_CLOSED_REQUEST, BODY_TIMEOUT: 408, SHUTTING_DOWN: 503}


def cancel_status(error: asyncio.CancelledError) -> int:
    """The status of a request cancelled with `error`. A cancellation without one of the server's
    reasons (the task was cancelled by something else) counts as the client's departure: the
    request is over and nobody got an answer."""
    reason = error.args[0] if error.args else None
    return _STATUS.get(reason, CLIENT_CLOSED_REQUEST) if isinstance(reason, str) else CLIENT_CLOSED_REQUEST
