"""Vendor-neutral behaviour of the fake upstreams.

Each vendor module turns its request body into a :class:`Turn` (what the
caller asked), :func:`answer` decides what the "model" says, and the vendor
module renders that :class:`Answer` in its own wire format.  The model name
picks a :class:`Scenario` (normal answer, error, slow, hang, drop, ...).

Rules (shared by all vendors):

* last message is a tool result      -> text ``"tool said: <results joined by ' | '>"``, unless
  the results hold ``[[tool NAME {...}]]`` directives naming declared tools (tool choice not
  "none"): then those calls (a tool whose output calls it again keeps an agent loop going)
* tools declared, last message from the user, tool choice not "none", and the
  last user message's text (any of its text parts, e.g. after system-reminder
  blocks; for Gemini any user text after the last model turn) holds directives
  ``[[tool NAME {JSON object}]]`` naming declared tools
                                     -> one call per such directive, in order, to
                                        NAME with exactly those arguments (a forced
                                        tool choice keeps only directives naming it;
                                        a directive with an undeclared tool or bad
                                        JSON is ignored).  Lets a prompt make a real
                                        agent (Claude Code) run a real tool, e.g.
                                        ``[[tool Bash {"command": "echo hi"}]]``
* tools declared, last message from the user, tool choice not "none"
                                     -> tool call(s) to the first declared tool
                                        (or the forced one), args ``{"query": <user text>}``;
                                        two calls when the user text has the word "parallel"
* the last user message holds ``[[verdict allow|deny REASON]]`` (e.g. inside the text a
  guardrail judge is asked to judge)  -> text: a sentence of prose, then a ```json code fence
                                        holding ``{"verdict": ..., "reason": REASON}`` (the
                                        shape the `judge` policy asks for, with the wrapping it
                                        tolerates); no system prefix, no truncation
* JSON output requested              -> text ``{"echo": "<user text>"}``
* otherwise                          -> text ``"echo: <user text>"`` + ``" [image]"`` per image
* a system prompt prefixes any non-JSON text with ``"[system: <first 30 chars>] "``
* a max-tokens limit smaller than the answer's word count truncates it to that
  many words (finish reason "length" / "max_tokens" / "MAX_TOKENS").

Streams: an answer's text streams a word per delta; a model named ``chunk-N`` (after any
``vendor/`` or ``models/`` prefix) streams it ``N`` characters per delta instead, so a word (an
e-mail address) is split over many events.  See :func:`stream_pieces`.

Token counts: input = ``max(1, ceil(chars / 4))`` where chars counts every text
of the conversation (system, message texts, tool results, tool-call arguments);
output = number of whitespace-separated words of the answer (for tool calls:
of the JSON arguments).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_ERROR_RE = re.compile(r"error-([1-5]\d\d)")
_SLOW_RE = re.compile(r"slow-(\d+)")
_CHUNK_RE = re.compile(r"chunk-(\d+)")


@dataclass(frozen=True)
class Scenario:
    kind: str = "normal"  # normal | error | slow | hang | drop | stream-error
    status: int = 200  # for kind == "error"
    delay: float = 0.0  # seconds before headers (kind == "slow")

    @property
    def chunk_delay(self) -> float:
        return self.delay / 5


def parse_scenario(model: Any) -> Scenario:
    """Pick the behaviour from a model name (``vendor/`` or ``models/`` prefixes are ignored)."""
    name = str(model or "").rsplit("/", 1)[-1].strip().lower()
    if m := _ERROR_RE.fullmatch(name):
        return Scenario("error", status=int(m.group(1)))
    if m := _SLOW_RE.fullmatch(name):
        return Scenario("slow", delay=int(m.group(1)) / 1000.0)
    if name in ("hang", "drop", "stream-error"):
        return Scenario(name)
    return Scenario()


@dataclass
class Turn:
    """What a chat request asks for, independent of the vendor."""

    system: str | None = None
    last_kind: str = "user"  # user | tool | assistant
    user_text: str = ""  # text of the last user message (parts joined by " ")
    # Where tool directives are looked for when not only in user_text: every user-side text after
    # the last assistant turn (a vendor without mid-conversation system messages may get them as
    # extra user turns after the one holding the directive).
    directive_text: str | None = None
    images: int = 0  # image parts in the last user message
    tool_results: list[str] = field(default_factory=list)  # trailing tool results
    tools: list[str] = field(default_factory=list)  # declared client tool names
    tool_choice: str = "auto"  # auto | none | required | name:<tool>
    json_mode: bool = False
    max_tokens: int | None = None
    texts: list[str] = field(default_factory=list)  # every text, for input tokens

    @property
    def input_tokens(self) -> int:
        return count_input_tokens(self.texts)


@dataclass
class ToolCall:
    name: str
    args: dict[str, Any]

    @property
    def arguments(self) -> str:
        """The JSON text OpenAI-style clients see (compact, like the vendors)."""
        return json.dumps(self.args, ensure_ascii=False, separators=(",", ":"))


@dataclass
class Answer:
    text: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    truncated: bool = False
    input_tokens: int = 1

    @property
    def output_tokens(self) -> int:
        if self.calls:
            return sum(len(c.arguments.split()) for c in self.calls)
        return len((self.text or "").split())

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def count_input_tokens(texts: list[str]) -> int:
    chars = sum(len(t) for t in texts if t)
    return max(1, (chars + 3) // 4)


def split_words(text: str) -> list[str]:
    """Split into streaming pieces, one word each, keeping spaces: 'a b' -> ['a ', 'b']."""
    pieces = re.findall(r"\s*\S+\s*", text)
    return pieces or [text]


def stream_pieces(text: str, model: Any) -> list[str]:
    """The deltas a streamed answer's text is sent in: a word each, or ``N`` characters each for a
    model named ``chunk-N``."""
    name = str(model or "").rsplit("/", 1)[-1].strip().lower()
    if (m := _CHUNK_RE.fullmatch(name)) and int(m.group(1)) > 0 and text:
        size = int(m.group(1))
        return [text[i : i + size] for i in range(0, len(text), size)]
    return split_words(text)


def split_in_pieces(text: str, n: int = 3) -> list[str]:
    """Split a string into ``n`` (>= 2 when possible) non-empty consecutive pieces."""
    if len(text) < 2:
        return [text]
    n = max(2, min(n, len(text)))
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


# [[tool NAME {...}]]: the arguments end at the last "}" before "]]", so nested objects work.
_DIRECTIVE_RE = re.compile(r"\[\[tool\s+([^\s\[\]{}]+)\s*(\{.*?\})\s*\]\]", re.DOTALL)


def tool_directives(text: str, tools: list[str], tool_choice: str = "auto") -> list[ToolCall]:
    """The calls asked for by ``[[tool NAME {JSON object}]]`` directives in ``text``.

    Only declared tools count (and only the forced one under a ``name:`` tool choice); a
    directive whose arguments are not a JSON object is ignored.
    """
    forced = tool_choice[5:] if tool_choice.startswith("name:") else None
    calls = []
    for m in _DIRECTIVE_RE.finditer(text):
        name = m.group(1)
        if name not in tools or (forced is not None and name != forced):
            continue
        try:
            args = json.loads(m.group(2))
        except ValueError:
            continue
        if isinstance(args, dict):
            calls.append(ToolCall(name, args))
    return calls


_VERDICT_RE = re.compile(r"\[\[verdict\s+(allow|deny)\b\s*([^\]]*)\]\]")


def answer(turn: Turn) -> Answer:
    out = Answer(input_tokens=turn.input_tokens)
    verdict = _VERDICT_RE.search(turn.user_text) if turn.last_kind == "user" else None
    if verdict is not None:
        decided = json.dumps({"verdict": verdict.group(1), "reason": verdict.group(2).strip()})
        out.text = f"Here is my judgement.\n```json\n{decided}\n```"
        return out
    if turn.last_kind == "tool":
        if turn.tool_choice != "none" and (directed := tool_directives(" ".join(turn.tool_results), turn.tools, turn.tool_choice)):
            out.calls = directed
            return out
        text = "tool said: " + " | ".join(turn.tool_results)
    elif turn.tools and turn.tool_choice != "none" and turn.last_kind == "user":
        directive_text = turn.user_text if turn.directive_text is None else turn.directive_text
        if directed := tool_directives(directive_text, turn.tools, turn.tool_choice):
            out.calls = directed
            return out
        name = turn.tool_choice[5:] if turn.tool_choice.startswith("name:") else turn.tools[0]
        names = [name]
        if _has_word(turn.user_text, "parallel"):
            forced = turn.tool_choice.startswith("name:") or len(turn.tools) < 2
            names.append(name if forced else turn.tools[1])
        out.calls = [ToolCall(n, {"query": turn.user_text}) for n in names]
        return out
    elif turn.json_mode:
        out.text = json.dumps({"echo": turn.user_text}, ensure_ascii=False)
        return out
    else:
        text = "echo: " + turn.user_text + " [image]" * turn.images
    if turn.system:
        text = f"[system: {turn.system[:30]}] " + text
    if turn.max_tokens is not None and turn.max_tokens >= 1:
        words = split_words(text)
        if len(words) > turn.max_tokens:
            text = "".join(words[: turn.max_tokens]).rstrip()
            out.truncated = True
    out.text = text
    return out


# ---------------------------------------------------------------- embeddings

def embedding_vector(text: str, dims: int | None = None) -> list[float]:
    """Deterministic unit-length vector of ``dims`` (default 8) float32-exact values."""
    import hashlib
    import math
    import struct

    dims = dims if dims and dims > 0 else 8
    raw = b""
    counter = 0
    while len(raw) < dims * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    ints = struct.unpack(f"<{dims}I", raw[: dims * 4])
    vals = [(i / 0xFFFFFFFF) * 2.0 - 1.0 for i in ints]
    norm = math.sqrt(sum(v * v for v in vals)) or 1.0
    vals = [v / norm for v in vals]
    # round-trip through float32 so float and base64 encodings agree exactly
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *vals)))


def embedding_base64(vec: list[float]) -> str:
    import base64
    import struct

    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
