"""The `policies:` list and the per-endpoint `guardrails:` shorthand, parsed into typed objects.

Each policy is decoded on its own so an error names it: `policies[1] (words).deny[0]: not a valid
regular expression: ...`. `aigw.config` calls `resolve_policies` once at start and prefixes its file
name; `build_engine` turns an endpoint's policy list into a `PolicyEngine`.

Phases (`on`) default to what a kind is for: content kinds (pii, keywords, unsafe_content, webhook,
python) check both the call and the result; request kinds (topics, jailbreak, judge) the call only.
YAML 1.1 reads a bare `on` key as the boolean true; it is taken as `on`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import msgspec

from .engine import PolicyEngine
from .function import PythonPolicy, import_function
from .judge import Judge, JudgePolicy
from .keywords import DEFAULT_WINDOW, KeywordError, KeywordMatcher, KeywordsPolicy
from .pii import PiiPolicy, PiiScanner
from .pii_detectors import ENTITIES, region_known
from .screens import (
    JAILBREAK_PATTERNS, JAILBREAK_RULE, UNSAFE_CATEGORIES, UNSAFE_PATTERNS, UNSAFE_RULE, Prefilter, ScreenPolicy,
    TopicsByEmbeddings, topics_rule,
)  # fmt: skip
from .services import NO_SERVICES, PolicyServices
from .verdicts import Phase, Policy
from .webhook import WebhookPolicy

PhaseName = Literal["call", "result"]
StreamMode = Literal["buffer", "after"]  # judge, webhook, python on a stream: hold it, or check at the end
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
MAX_POLICIES = 100  # declared, and per endpoint
MAX_ENTRIES = 10_000  # keywords or topics in one policy


class PolicyConfigError(ValueError):
    """A policy problem, as `<key path>: <what is wrong>`; aigw.config adds the file name."""


class _Policy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    name: str
    on: list[PhaseName] | None = None  # None: the kind's default phases
    on_error: Literal["deny", "allow"] = "deny"
    timeout: float | None = None  # seconds; None: the kind's default
    default_on: ClassVar[tuple[PhaseName, ...]] = ("call", "result")
    default_timeout: ClassVar[float | None] = None

    @property
    def kind(self) -> str:
        return type(self).__struct_config__.tag  # type: ignore[return-value]

    @property
    def phases(self) -> frozenset[Phase]:
        return frozenset(Phase(p) for p in (self.on if self.on is not None else self.default_on))

    @property
    def effective_timeout(self) -> float | None:
        return self.timeout if self.timeout is not None else self.default_timeout


class PiiPolicyConfig(_Policy, tag="pii"):
    action: Literal["block", "mask"] = "block"
    entities: list[str] | None = None  # None: all of ENTITIES
    region: str = "US"  # phone numbers written without a country code are read as this country's


class KeywordsPolicyConfig(_Policy, tag="keywords"):
    deny: list[str]  # words, phrases, or regular expressions with an `re:` prefix
    window: int = DEFAULT_WINDOW  # the longest text an `re:` entry is matched against


class TopicsPolicyConfig(_Policy, tag="topics"):
    topics: list[str]  # the allowed topics; a request on none of them is denied
    endpoint: str | None = None  # a chat endpoint that judges, or:
    embeddings_endpoint: str | None = None  # an embeddings endpoint: similarity to the topics
    threshold: float = 0.5  # embeddings: the least cosine similarity to an allowed topic
    cache_seconds: float = 300.0  # judge: identical inputs reuse the verdict this long
    stream: StreamMode = "buffer"
    default_on: ClassVar[tuple[PhaseName, ...]] = ("call",)
    default_timeout: ClassVar[float | None] = 10.0


class JailbreakPolicyConfig(_Policy, tag="jailbreak"):
    endpoint: str | None = None  # the judge; None: the heuristic pre-filter alone
    prefilter: bool = True  # cheap patterns first: a match denies without the judge
    judge_all: bool = True  # what the pre-filter does not match still goes to the judge
    cache_seconds: float = 300.0
    stream: StreamMode = "buffer"
    default_on: ClassVar[tuple[PhaseName, ...]] = ("call",)
    default_timeout: ClassVar[float | None] = 10.0


class UnsafeContentPolicyConfig(_Policy, tag="unsafe_content"):
    endpoint: str | None = None
    prefilter: bool = True
    judge_all: bool = True
    cache_seconds: float = 300.0
    stream: StreamMode = "buffer"
    default_timeout: ClassVar[float | None] = 10.0


class JudgePolicyConfig(_Policy, tag="judge"):
    endpoint: str  # a chat endpoint of this gateway
    rule: str  # in plain language, e.g. "Deny requests that ask for a medical diagnosis."
    cache_seconds: float = 300.0  # identical inputs reuse the verdict this long; 0: no cache
    categories: list[str] | None = None  # of a deny; None: the policy's name
    stream: StreamMode = "buffer"
    default_on: ClassVar[tuple[PhaseName, ...]] = ("call",)
    default_timeout: ClassVar[float | None] = 10.0


class WebhookPolicyConfig(_Policy, tag="webhook"):
    url: str
    headers: dict[str, str] = {}  # ${VAR} references take values from the environment
    stream: StreamMode = "buffer"
    default_timeout: ClassVar[float | None] = 5.0


class PythonPolicyConfig(_Policy, tag="python"):
    function: str  # "package.module:function", sync or async, returning a verdict
    stream: StreamMode = "buffer"
    default_timeout: ClassVar[float | None] = 5.0


PolicyConfig = Union[
    PiiPolicyConfig, KeywordsPolicyConfig, TopicsPolicyConfig, JailbreakPolicyConfig, UnsafeContentPolicyConfig,
    JudgePolicyConfig, WebhookPolicyConfig, PythonPolicyConfig,
]  # fmt: skip
KINDS = {c.__struct_config__.tag: c for c in PolicyConfig.__args__}  # type: ignore[attr-defined]


# --- the Databricks shorthand ----------------------------------------------------------------------


class _Shorthand(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class GuardrailPii(_Shorthand):
    behavior: Literal["NONE", "BLOCK", "MASK"] = "NONE"


class GuardrailOutput(_Shorthand):
    safety: bool = False
    pii: GuardrailPii | None = None


class GuardrailInput(GuardrailOutput):
    invalid_keywords: list[str] = []
    valid_topics: list[str] = []


class GuardrailsConfig(_Shorthand):
    input: GuardrailInput | None = None
    output: GuardrailOutput | None = None
    endpoint: str | None = None  # ours: the chat endpoint that judges safety and topics


@dataclass(frozen=True)
class EndpointPolicies:
    """What `aigw.config` passes in for one endpoint: its name and the two raw fields."""

    name: str
    policies: list[str]
    guardrails: Any = None
    tasks: frozenset[str] | None = None  # None: not checked


_ENDPOINT_FIELDS = (("endpoint", "chat"), ("embeddings_endpoint", "embeddings"))


def _check_targets(policy: PolicyConfig, where: str, endpoints: dict[str, EndpointPolicies]) -> None:
    """A policy's judge or embeddings endpoint exists and serves that task."""
    for field, task in _ENDPOINT_FIELDS:
        target = getattr(policy, field, None)
        if target is None:
            continue
        if target not in endpoints:
            raise PolicyConfigError(f"{where}.{field}: no endpoint named '{target}'")
        tasks = endpoints[target].tasks
        if tasks is not None and task not in tasks:
            raise PolicyConfigError(f"{where}.{field}: endpoint '{target}' does not serve {task}")


# --- parsing ---------------------------------------------------------------------------------------


def _readable(message: str) -> tuple[str, str]:
    """msgspec's "Expected `int`, got `str` - at `$.deny[0]`" as ("deny[0]", "Expected ...")."""
    text, sep, where = message.rpartition(" - at `")
    if not sep:
        return "", message
    return where.rstrip("`").removeprefix("$").removeprefix("."), text


def _decode(raw: Any, kind: type, where: str) -> Any:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        key, text = _readable(str(exc))
        raise PolicyConfigError(f"{where}{'.' + key if key else ''}: {text}") from None


def parse_policy(raw: Any, where: str) -> PolicyConfig:
    if not isinstance(raw, dict):
        raise PolicyConfigError(f"{where}: must be a mapping")
    raw = dict(raw)
    if True in raw:  # YAML 1.1: `on:` is read as the key true
        raw.setdefault("on", raw.pop(True))
    name = raw.get("name")
    if isinstance(name, str):
        where = f"{where} ({name})"
    kind = raw.get("kind")
    if kind not in KINDS:
        known = ", ".join(KINDS)
        raise PolicyConfigError(f"{where}.kind: {'missing' if kind is None else f'unknown kind {kind!r}'} (known: {known})")
    policy = _decode(raw, KINDS[kind], where)
    _check_policy(policy, where)
    return policy


def _check_policy(policy: PolicyConfig, where: str) -> None:
    if not _NAME.fullmatch(policy.name):
        raise PolicyConfigError(f"{where}.name: '{policy.name}' is not a valid policy name")
    if policy.on is not None and (not policy.on or len(set(policy.on)) != len(policy.on)):
        raise PolicyConfigError(f"{where}.on: list call, result or both, once each")
    if policy.timeout is not None and policy.timeout <= 0:
        raise PolicyConfigError(f"{where}.timeout: must be positive")
    check = _KIND_CHECKS.get(policy.kind)
    if check is not None:
        check(policy, where)


def _check_pii(policy: PiiPolicyConfig, where: str) -> None:
    if policy.entities is not None:
        if not policy.entities:
            raise PolicyConfigError(f"{where}.entities: list at least one entity, or leave it out for all")
        for i, entity in enumerate(policy.entities):
            if entity not in ENTITIES:
                raise PolicyConfigError(f"{where}.entities[{i}]: unknown entity '{entity}' (known: {', '.join(ENTITIES)})")
    if not region_known(policy.region):
        raise PolicyConfigError(f"{where}.region: '{policy.region}' is not a two-letter region phonenumbers knows")


def _check_keywords(policy: KeywordsPolicyConfig, where: str, field: str = "deny") -> None:
    if not policy.deny or len(policy.deny) > MAX_ENTRIES:
        raise PolicyConfigError(f"{where}.{field}: list 1 to {MAX_ENTRIES} words, phrases or re: expressions")
    if not 16 <= policy.window <= 4096:
        raise PolicyConfigError(f"{where}.window: must be between 16 and 4096 characters")
    try:
        KeywordMatcher(policy.deny, policy.window)
    except KeywordError as exc:
        raise PolicyConfigError(f"{where}.{field}{exc}") from None


def _check_endpoint_named(policy: Any, where: str) -> None:
    for field in ("endpoint", "embeddings_endpoint"):
        value = getattr(policy, field, None)
        if value is not None and not value.strip():
            raise PolicyConfigError(f"{where}.{field}: must name an endpoint of this gateway")
    if getattr(policy, "cache_seconds", 0) < 0:
        raise PolicyConfigError(f"{where}.cache_seconds: must be 0 or more")


def _check_screen(policy: JailbreakPolicyConfig | UnsafeContentPolicyConfig, where: str) -> None:
    _check_endpoint_named(policy, where)
    if policy.endpoint is None and not policy.prefilter:
        raise PolicyConfigError(f"{where}.endpoint: needed when prefilter is false (there would be nothing to check with)")


def _check_topics(policy: TopicsPolicyConfig, where: str, field: str = "topics") -> None:
    _check_endpoint_named(policy, where)
    if (policy.endpoint is None) == (policy.embeddings_endpoint is None):
        raise PolicyConfigError(f"{where}.endpoint: give either endpoint (a chat endpoint that judges) or embeddings_endpoint")
    if not policy.topics or len(policy.topics) > MAX_ENTRIES or any(not t.strip() for t in policy.topics):
        raise PolicyConfigError(f"{where}.{field}: list 1 to {MAX_ENTRIES} topics, none empty")
    if not 0 <= policy.threshold <= 1:
        raise PolicyConfigError(f"{where}.threshold: must be between 0 and 1")


def _check_judge(policy: JudgePolicyConfig, where: str) -> None:
    _check_endpoint_named(policy, where)
    if not policy.rule.strip() or len(policy.rule) > 10_000:
        raise PolicyConfigError(f"{where}.rule: must be 1 to 10,000 characters")
    if policy.categories is not None and (
        not 1 <= len(policy.categories) <= 20 or not all(re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", c) for c in policy.categories)
    ):
        raise PolicyConfigError(f"{where}.categories: list 1 to 20 short names (letters, digits, _ . : -)")


def _check_webhook(policy: WebhookPolicyConfig, where: str) -> None:
    if not re.fullmatch(r"https?://[^/\s]+(?:/\S*)?", policy.url):
        raise PolicyConfigError(f"{where}.url: must be an http:// or https:// URL")
    for key, value in policy.headers.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}", key) or any(c in value for c in "\r\n\0"):
            raise PolicyConfigError(f"{where}.headers: '{key[:40]}' is not a valid header")


def _check_python(policy: PythonPolicyConfig, where: str) -> None:
    if not _IMPORT_PATH.fullmatch(policy.function):
        raise PolicyConfigError(f"{where}.function: '{policy.function}' is not an import path like package.module:function")
    try:
        import_function(policy.function)
    except ValueError as exc:
        raise PolicyConfigError(f"{where}.function: {exc}") from None


_KIND_CHECKS: dict[str, Any] = {
    "pii": _check_pii, "keywords": _check_keywords, "topics": _check_topics, "jailbreak": _check_screen,
    "unsafe_content": _check_screen, "judge": _check_judge, "webhook": _check_webhook, "python": _check_python,
}  # fmt: skip


def parse_policies(raw: Any) -> dict[str, PolicyConfig]:
    """The top-level `policies:` list, by name."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise PolicyConfigError("policies: must be a list")
    if len(raw) > MAX_POLICIES:
        raise PolicyConfigError(f"policies: at most {MAX_POLICIES} policies")
    declared: dict[str, PolicyConfig] = {}
    for i, item in enumerate(raw):
        policy = parse_policy(item, f"policies[{i}]")
        if policy.name in declared:
            raise PolicyConfigError(f"policies[{i}].name: duplicate policy name '{policy.name}'")
        declared[policy.name] = policy
    return declared


def guardrail_policies(endpoint: str, raw: Any, where: str) -> list[PolicyConfig]:
    """Databricks' `guardrails:` block as policies: input is the call phase, output the result."""
    if raw is None:
        return []
    shorthand = _decode(raw, GuardrailsConfig, where)
    policies: list[PolicyConfig] = []
    sides: list[tuple[str, PhaseName, GuardrailOutput | None]] = [("input", "call", shorthand.input), ("output", "result", shorthand.output)]
    for side, phase, block in sides:
        if block is None:
            continue
        prefix = f"{endpoint}/guardrails.{side}"
        if block.pii is not None and block.pii.behavior != "NONE":
            action: Literal["block", "mask"] = "block" if block.pii.behavior == "BLOCK" else "mask"
            policies.append(PiiPolicyConfig(name=f"{prefix}.pii", on=[phase], action=action))
        if isinstance(block, GuardrailInput) and block.invalid_keywords:
            keywords = KeywordsPolicyConfig(name=f"{prefix}.invalid_keywords", on=[phase], deny=block.invalid_keywords)
            _check_keywords(keywords, f"{where}.{side}", "invalid_keywords")
            policies.append(keywords)
        if block.safety:
            policies.append(UnsafeContentPolicyConfig(name=f"{prefix}.safety", on=[phase], endpoint=shorthand.endpoint))
        if isinstance(block, GuardrailInput) and block.valid_topics:
            if shorthand.endpoint is None:
                raise PolicyConfigError(f"{where}.{side}.valid_topics: needs {where}.endpoint, the chat endpoint that judges topics")
            topics = TopicsPolicyConfig(name=f"{prefix}.valid_topics", on=[phase], topics=block.valid_topics, endpoint=shorthand.endpoint)
            _check_topics(topics, f"{where}.{side}", "valid_topics")
            policies.append(topics)
    return policies


def resolve_policies(raw_policies: Any, endpoints: list[EndpointPolicies]) -> dict[str, tuple[PolicyConfig, ...]]:
    """Each endpoint's policies in the order they run: its `policies:` names, then its shorthand.
    Judge endpoints must exist; endpoints without policies are left out of the result."""
    declared = parse_policies(raw_policies)
    by_name = {e.name: e for e in endpoints}
    for i, policy in enumerate(declared.values()):
        _check_targets(policy, f"policies[{i}] ({policy.name})", by_name)
    resolved: dict[str, tuple[PolicyConfig, ...]] = {}
    for i, endpoint in enumerate(endpoints):
        where = f"endpoints[{i}]"
        chosen: list[PolicyConfig] = []
        if len(endpoint.policies) > MAX_POLICIES:
            raise PolicyConfigError(f"{where}.policies: at most {MAX_POLICIES} policies")
        for j, name in enumerate(endpoint.policies):
            if name not in declared:
                known = ", ".join(declared) or "none declared"
                raise PolicyConfigError(f"{where}.policies[{j}]: unknown policy '{name}' (policies: {known})")
            if declared[name] in chosen:
                raise PolicyConfigError(f"{where}.policies[{j}]: policy '{name}' is listed twice")
            chosen.append(declared[name])
        shorthand = guardrail_policies(endpoint.name, endpoint.guardrails, f"{where}.guardrails")
        for policy in shorthand:
            _check_targets(policy, f"{where}.guardrails", by_name)
        chosen.extend(shorthand)
        if chosen:
            resolved[endpoint.name] = tuple(chosen)
    return resolved


# --- building --------------------------------------------------------------------------------------


def build_policy(config: PolicyConfig, services: PolicyServices = NO_SERVICES) -> Policy:
    """One policy; the kinds that call out get the gateway's `services` (NO_SERVICES: built only to
    check a configuration)."""
    phases, timeout, on_error = config.phases, config.effective_timeout, config.on_error
    if isinstance(config, PiiPolicyConfig):
        scanner = PiiScanner(config.entities if config.entities is not None else ENTITIES, config.region)
        return PiiPolicy(config.name, phases, config.action, scanner, config.on_error, timeout)
    if isinstance(config, KeywordsPolicyConfig):
        matcher = KeywordMatcher(config.deny, config.window)
        return KeywordsPolicy(config.name, phases, matcher, config.on_error, timeout)
    if isinstance(config, JudgePolicyConfig):
        judge = Judge(services, config.endpoint, config.rule, config.cache_seconds)
        return JudgePolicy(config.name, phases, judge, tuple(config.categories or ()), on_error, timeout)
    if isinstance(config, (JailbreakPolicyConfig, UnsafeContentPolicyConfig)):
        jailbreak = isinstance(config, JailbreakPolicyConfig)
        screen_judge = None
        if config.endpoint is not None:
            rule = JAILBREAK_RULE if jailbreak else UNSAFE_RULE
            categories = () if jailbreak else UNSAFE_CATEGORIES
            screen_judge = Judge(services, config.endpoint, rule, config.cache_seconds, categories)
        prefilter = Prefilter(JAILBREAK_PATTERNS if jailbreak else UNSAFE_PATTERNS) if config.prefilter else None
        return ScreenPolicy(config.name, config.kind, phases, screen_judge, prefilter, config.judge_all, on_error, timeout)
    if isinstance(config, TopicsPolicyConfig):
        if config.embeddings_endpoint is not None:
            return TopicsByEmbeddings(
                config.name, phases, services, config.embeddings_endpoint, config.topics, config.threshold, on_error, timeout
            )  # fmt: skip
        assert config.endpoint is not None
        topics_judge = Judge(services, config.endpoint, topics_rule(config.topics), config.cache_seconds)
        return JudgePolicy(config.name, phases, topics_judge, ("off_topic",), on_error, timeout)  # off the topics: a deny
    if isinstance(config, WebhookPolicyConfig):
        return WebhookPolicy(config.name, phases, services, config.url, config.headers, on_error, timeout)
    if isinstance(config, PythonPolicyConfig):
        try:
            func = import_function(config.function)
        except ValueError as exc:
            raise PolicyConfigError(f"policy '{config.name}'.function: {exc}") from None
        return PythonPolicy(config.name, phases, func, on_error, timeout)
    raise PolicyConfigError(f"policy '{config.name}': kind '{config.kind}' is not implemented")


def build_engine(configs: tuple[PolicyConfig, ...] | list[PolicyConfig], services: PolicyServices = NO_SERVICES) -> PolicyEngine:
    """One engine per endpoint, built at start (and on reload); compiled patterns are shared by none.
    Judges' caches are per engine."""
    return PolicyEngine([_with_stream_mode(build_policy(c, services), c) for c in configs])


def _with_stream_mode(policy: Policy, config: PolicyConfig) -> Policy:
    """The whole-text kinds carry their `stream:` mode for the surfaces' stream handling."""
    mode = getattr(config, "stream", None)
    if mode is not None:
        policy.stream = mode  # type: ignore[attr-defined]
    return policy
