"""What the agent loop accepts from a model: a Response object, or Responses stream events, checked
for the shape the loop relies on before it reads them.

A pass-through destination's answer reaches the loop as the upstream wrote it. The loop reads item
types, names and arguments, renumbers output indexes, and feeds the items back to the model in the
next turn; a malformed event or item would crash it mid-stream (a 500, or a stream cut without a
terminator). Here any such answer becomes the destination's failure (`UPSTREAM_ERROR`, 502), which
the loop ends the response with like any other: an `error` event and `response.failed` streamed,
an OpenAI-shaped 502 otherwise, the failed response stored. Unknown fields and item types pass: the
check is of the fields the gateway reads, not of OpenAI's whole schema.
"""

from __future__ import annotations

from typing import Any

import orjson

from aigw.errors import ErrorKind, GatewayError

Item = dict[str, Any]
# Fields the loop reads, by item type: each must be a string when present (None allowed).
_STRING_FIELDS = {
    "function_call": ("name", "arguments", "call_id"),
    "custom_tool_call": ("name", "input", "call_id"),
    "mcp_call": ("server_label", "name", "arguments"),
    "mcp_approval_request": ("server_label", "name", "arguments"),
    "message": ("role",),
}
# Stream events whose `response` the loop reads (usage, status, model).
_RESPONSE_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_ITEM_EVENTS = frozenset({"response.output_item.added", "response.output_item.done"})


def malformed(label: str, what: str) -> GatewayError:
    """The destination's failure: retryable, as a garbled answer from one destination says nothing of another."""
    return GatewayError(ErrorKind.UPSTREAM_ERROR, f"Destination '{label}' sent a malformed {what}.", retryable=True)


def response_object(data: bytes, label: str) -> Item:
    """A whole (non-streamed) answer: a JSON object whose `output` is a list of well-formed items."""
    try:
        response = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise malformed(label, "response (not JSON)") from None
    check_response(response, label)
    return response


def check_response(response: Any, label: str) -> None:
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        raise malformed(label, "response (no output list)")
    for item in response["output"]:
        check_item(item, label)
    _check_ending(response, label)


def check_item(item: Any, label: str) -> None:
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise malformed(label, "output item (not an object with a type)")
    for key in _STRING_FIELDS.get(item["type"], ()):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise malformed(label, f"{item['type']} item ('{key}' is not a string)")
    if item["type"] == "message":
        content = item.get("content")
        if content is not None and not (isinstance(content, list) and all(isinstance(part, dict) for part in content)):
            raise malformed(label, "message item (content is not a list of parts)")


def stream_event(data: bytes, label: str) -> Item:
    """One pass-through stream event: a JSON object with a string `type`; the item or response it
    carries checked where the loop reads them."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise malformed(label, "stream event (not JSON)") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise malformed(label, "stream event (no type)")
    kind = event["type"]
    index = event.get("output_index")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise malformed(label, f"{kind} event (output_index is not a count)")
    if kind in _ITEM_EVENTS:
        check_item(event.get("item"), label)
    elif kind in _RESPONSE_EVENTS:
        response = event.get("response")
        if response is not None and not isinstance(response, dict):
            raise malformed(label, f"{kind} event (response is not an object)")
        _check_ending(response or {}, label)
    return event


def _check_ending(response: Item, label: str) -> None:
    """The fields the loop reads when a turn ends (usage is read leniently by `decode_usage`)."""
    details = response.get("incomplete_details")
    if details is not None and not isinstance(details, dict):
        raise malformed(label, "response (incomplete_details is not an object)")
    model = response.get("model")
    if model is not None and not isinstance(model, str):
        raise malformed(label, "response (model is not a string)")
    error = response.get("error")
    if error is not None and not isinstance(error, dict):
        raise malformed(label, "response (error is not an object)")
