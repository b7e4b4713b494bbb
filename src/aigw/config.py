"""Settings: a YAML file, overridden by environment variables, validated once at start.

Everything is decoded into typed structs with msgspec, so a bad file fails at start with the file,
the key path and what is wrong — the gateway never starts half-configured. The resulting `Settings`
object is passed along; nothing reads the environment or the file after start.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

Task = Literal["chat", "embeddings"]

DEFAULT_PORT = 8080
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # images inline as base64 make chat bodies large


class ConfigError(Exception):
    """A configuration problem, reported as `<file>: <key>: <what is wrong>`."""


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class DestinationConfig(Config):
    provider: str
    model: str
    api_key: str | None = None
    base_url: str | None = None
    timeout: float = 120.0  # seconds to connect, to the response head, and between body chunks
    # Seconds for a whole non-streamed exchange, from sending to the last byte: an answer that keeps
    # dripping is still bounded. Streams have no total (a long generation is legitimate).
    total_timeout: float = 600.0
    # Bytes of a non-streamed answer, past which it is refused (502) without reading further. The
    # largest legitimate answers are embeddings batches: OpenAI's maximum (2,048 inputs x 3,072
    # floats at ~21 bytes each) is ~130 MB, so the default leaves it twice that.
    max_response_bytes: int = 256 * 1024 * 1024
    # Bytes of one event of a streamed answer still waiting for its end. Big events are legitimate:
    # a Responses stream's final event carries the whole response, Gemini sends a generated image
    # inline in one event (~27 MB base64 for a 4K PNG).
    max_event_bytes: int = 64 * 1024 * 1024
    name: str | None = None  # label in errors and records; default "<provider>/<model>"
    headers: dict[str, str] = {}  # extra headers sent upstream
    api_version: str | None = None  # azure_openai
    deployment: str | None = None  # azure_openai; default: model
    weight: float = 1.0  # share of the endpoint's traffic among its destinations
    retries: int = 0  # extra tries of this destination on a retryable failure, before the next one
    retry_backoff: float = 0.5  # seconds before the first retry, doubling each time, with jitter

    @property
    def label(self) -> str:
        return self.name or f"{self.provider}/{self.model}"


class CooldownConfig(Config):
    """A destination that fails `failures` times in a row is skipped for `seconds`."""

    failures: int = 3
    seconds: float = 30.0


class PayloadLoggingConfig(Config):
    """Request and response bodies kept in the payload table (inference table)."""

    enabled: bool = False
    sample: float = 1.0  # fraction of requests logged
    max_bytes: int = 10 * 1024 * 1024  # bigger bodies are replaced by a marker


RateLimitKey = Literal["endpoint", "user", "service_principal", "user_group"]
MAX_RATE_LIMITS = 20  # per endpoint


class RateLimitConfig(Config):
    """Requests (`calls`) and/or tokens per minute for the endpoint as a whole (`endpoint`), for each
    user (`user` without `principal`: the user default), or for one named user, service principal
    or group (a group shares one bucket). Where both are set, a request must pass both."""

    key: RateLimitKey
    principal: str | None = None
    calls: int | None = None  # requests per renewal period
    tokens: int | None = None  # tokens (input + output) per renewal period
    renewal_period: Literal["minute"] = "minute"


class EndpointConfig(Config):
    name: str
    destinations: list[DestinationConfig]
    task: Task | list[Task] = "chat"
    rate_limits: list[RateLimitConfig] = []  # see policies/limits.py
    fallbacks: list[DestinationConfig] = []  # tried in order once the chosen destination failed
    cooldown: CooldownConfig = msgspec.field(default_factory=CooldownConfig)
    payload_logging: PayloadLoggingConfig = msgspec.field(default_factory=PayloadLoggingConfig)
    policies: list[str] = []  # names from the top-level `policies:`, run in this order
    # Databricks' per-endpoint shorthand, mapped onto policies. Any: YAML 1.1 reads a bare `on:` key
    # as true, and aigw.policies.guardrails.config reads it either way.
    guardrails: Any = None

    @property
    def tasks(self) -> frozenset[str]:
        return frozenset([self.task] if isinstance(self.task, str) else self.task)


class ConnectionConfig(Config):
    """An MCP server the agent loop may call: `{"type": "connection", "name": ...}` in a request.
    Streamable HTTP (`url`) or stdio (`command`); its credentials (`headers`, `env`) stay here."""

    name: str
    url: str | None = None  # streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp
    headers: dict[str, str] = {}  # sent with every HTTP request to the server
    command: str | None = None  # stdio: the program to start
    args: list[str] = []
    env: dict[str, str] = {}  # stdio: added to the program's environment
    require_approval: Literal["always", "never"] = "always"  # a request may override it
    allowed_tools: list[str] | None = None  # None: every tool the server lists
    timeout: float = 60.0  # seconds per tool call (and to connect)


class FunctionConfig(Config):
    """A Python function the agent loop may call: `{"type": "hosted_function", "name": ...}` in a
    request, or `{"type": "uc_function", "uc_function": {"name": ...}}`."""

    name: str
    function: str  # import path: "package.module:function"
    description: str | None = None  # default: the function's docstring
    timeout: float = 30.0  # seconds per call


class AgentConfig(Config):
    """The server-side agent loop of /mlflow/v1/responses."""

    max_turns: int = 10  # model calls per response
    max_background_seconds: float = 600.0  # a background run is stopped (failed) after this
    allow_inline_mcp: bool = False  # may requests name MCP servers by URL ({"type": "mcp", ...})?
    # Inline MCP servers may not be on loopback, private, link-local, ... addresses (see
    # aigw.agent.egress) unless named here: host names, IP addresses or CIDR ranges.
    inline_mcp_allowed_hosts: list[str] = []
    connections: list[ConnectionConfig] = []
    functions: list[FunctionConfig] = []


class TracingConfig(Config):
    """OpenTelemetry spans of agent runs (one per model turn and per tool call)."""

    enabled: bool = False
    file: str | None = None  # append spans as JSON lines here
    otlp_endpoint: str | None = None  # OTLP/HTTP collector, e.g. http://127.0.0.1:4318/v1/traces
    service_name: str = "aigw"


class ServerConfig(Config):
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    token_refresh_seconds: float = 2.0
    # A request body must keep arriving (at most this many seconds between reads) and be complete
    # within `request_body_timeout` of the request's head; otherwise 408 and the connection closes.
    request_body_read_timeout: float = 30.0
    request_body_timeout: float = 120.0
    # Client connections held open at once (default: what the open-file limit leaves room for, at most
    # 10,000). Past it, the longest idle keep-alive connection is closed, or the client gets a 503.
    max_connections: int | None = None
    # On SIGTERM/SIGINT, requests in flight get this long to finish; then they are cancelled (503).
    graceful_timeout: float = 10.0
    # Browser origins allowed to call the gateway (CORS), e.g. ["https://app.example.com"]; "*" for
    # any. Empty (the default): no CORS headers, preflights are not answered.
    cors_origins: list[str] = []
    cors_max_age: int = 600  # seconds a browser may cache a preflight's answer
    # HTTPS: a PEM certificate (chain) and its private key; both or neither.
    tls_cert: str | None = None
    tls_key: str | None = None
    # Processes serving the port (aigw.http.workers); more than one needs redis_url if any endpoint
    # has rate limits. Changed only by a restart.
    workers: int = 1


class RecordingConfig(Config):
    """How usage and payload records reach the store (see aigw.recording.writer)."""

    # Write each request's records to disk (fsync'd, shared by concurrent requests) before its
    # answer completes, so a crash loses none; otherwise about a second of records can be lost.
    durable: bool = False


class LoggingConfig(Config):
    """The gateway's log on stderr (see aigw.logs); `aigw serve` flags override it."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    access_log: bool = True  # a line per request (never a body, header or token)


class RetentionConfig(Config):
    """How long records are kept (days; None: for ever). Each instance purges hourly."""

    usage_days: float | None = None
    payload_days: float | None = None  # payload logs hold whole bodies: usually the shortest
    responses_days: float | None = None  # stored Responses (agent API); running ones are kept
    interval_hours: float = 1.0


class Settings(Config):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    data_dir: str | None = None
    database_url: str | None = None
    redis_url: str | None = None  # shared rate-limit counters; default: in-process
    rate_limits_fail_open: bool = True  # Redis unreachable: admit (True) or refuse with 503
    demo_endpoint: bool = True  # serve the built-in `demo` endpoint
    endpoints: list[EndpointConfig] = []
    policies: list[Any] = []  # content policies (guardrails), parsed by aigw.policies.guardrails.config
    agent: AgentConfig = msgspec.field(default_factory=AgentConfig)
    tracing: TracingConfig = msgspec.field(default_factory=TracingConfig)
    recording: RecordingConfig = msgspec.field(default_factory=RecordingConfig)
    retention: RetentionConfig = msgspec.field(default_factory=RetentionConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)

    def data_path(self) -> Path:
        return Path(self.data_dir or Path.home() / ".aigw").expanduser()


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, path: str, environ: dict[str, str], source: str, required: bool = True) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of the document. With `required` false
    an unset variable stays as written (the admin commands need no provider keys)."""
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k), environ, source, required) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}[{i}]", environ, source, required) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        if not required:
            return match.group(0)
        raise ConfigError(f"{source}: {path}: environment variable {name} is not set")

    return _ENV_REFERENCE.sub(substitute, value)


def load_settings(
    path: str | Path | None = None, environ: dict[str, str] | None = None, *, require_env: bool = True
) -> Settings:
    """Load the YAML file (if any), apply environment overrides, validate. `require_env=False` lets
    `${VAR}` references to unset variables stand (for commands that never use them)."""
    environ = dict(os.environ if environ is None else environ)
    source = str(path) if path else "<defaults>"
    document: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping")
        document = _expand_env(loaded or {}, "", environ, source, require_env)

    server = document.setdefault("server", {})
    if not isinstance(server, dict):
        raise ConfigError(f"{source}: server: must be a mapping")
    overrides = {
        "AIGW_HOST": ("host", str), "AIGW_PORT": ("port", int), "AIGW_TLS_CERT": ("tls_cert", str), "AIGW_TLS_KEY": ("tls_key", str),
    }  # fmt: skip
    for variable, (key, kind) in overrides.items():
        if environ.get(variable):
            try:
                server[key] = kind(environ[variable])
            except ValueError:
                raise ConfigError(f"environment: {variable}: expected {kind.__name__}") from None
    if environ.get("AIGW_DATA_DIR"):
        document["data_dir"] = environ["AIGW_DATA_DIR"]
    if environ.get("AIGW_DATABASE_URL"):
        document["database_url"] = environ["AIGW_DATABASE_URL"]
    if environ.get("AIGW_REDIS_URL"):
        document["redis_url"] = environ["AIGW_REDIS_URL"]

    try:
        settings = msgspec.convert(document, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_readable(str(exc))}") from None
    _check(settings, source)
    return settings


def _readable(message: str) -> str:
    """msgspec says "Expected `int`, got `str` - at `$.server.port`"; lead with the key instead."""
    text, sep, where = message.rpartition(" - at `")
    if not sep:
        return message
    key = where.rstrip("`").removeprefix("$").removeprefix(".") or "(top level)"
    return f"{key}: {text}"


def _check_server(server: ServerConfig, source: str) -> None:
    for key in ("request_body_read_timeout", "request_body_timeout", "graceful_timeout"):
        if getattr(server, key) <= 0:
            raise ConfigError(f"{source}: server.{key}: must be positive")
    if server.workers < 1:
        raise ConfigError(f"{source}: server.workers: must be at least 1")
    if server.max_connections is not None and server.max_connections < 1:
        raise ConfigError(f"{source}: server.max_connections: must be at least 1")


def _check(settings: Settings, source: str) -> None:
    """Checks the types alone cannot express."""
    from aigw.providers.registry import PROVIDERS  # late import: providers import this module

    _check_store(settings, source)
    _check_retention(settings.retention, source)
    if settings.redis_url is not None and not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{source}: redis_url: must start with redis://, rediss:// or unix://")
    _check_server(settings.server, source)
    _check_agent(settings, source)
    names: set[str] = set()
    for i, endpoint in enumerate(settings.endpoints):
        where = f"{source}: endpoints[{i}]"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}", endpoint.name):
            raise ConfigError(f"{where}.name: '{endpoint.name}' is not a valid endpoint name")
        if endpoint.name in names:
            raise ConfigError(f"{where}.name: duplicate endpoint name '{endpoint.name}'")
        names.add(endpoint.name)
        if not endpoint.destinations:
            raise ConfigError(f"{where}.destinations: at least one destination is required")
        _check_routing(endpoint, where)
        _check_rate_limits(endpoint, where)
        for key, destination in _all_destinations(endpoint):
            provider = PROVIDERS.get(destination.provider)
            if provider is None:
                known = ", ".join(sorted(PROVIDERS))
                raise ConfigError(f"{where}.{key}.provider: unknown provider '{destination.provider}' (known: {known})")
            problem = provider.check_config(destination, endpoint.tasks)
            if problem:
                field, message = problem
                raise ConfigError(f"{where}.{key}.{field}: {message}")
            for field in ("timeout", "total_timeout", "weight", "retry_backoff", "max_response_bytes", "max_event_bytes"):
                if getattr(destination, field) <= 0:
                    raise ConfigError(f"{where}.{key}.{field}: must be positive")
            if destination.retries < 0:
                raise ConfigError(f"{where}.{key}.retries: must be 0 or more")
    _check_policies(settings, source)


def _check_policies(settings: Settings, source: str) -> None:
    """Parse and build every endpoint's policies once, so a bad one fails at start (or refuses a
    reload); the router builds its own engines from the same settings."""
    from aigw.policies.guardrails.config import PolicyConfigError, build_engine, resolve_policies

    try:
        for configs in resolve_policies(settings.policies, endpoint_policies(settings.endpoints)).values():
            build_engine(configs)
    except PolicyConfigError as exc:
        raise ConfigError(f"{source}: {_name_endpoint(str(exc), settings.endpoints)}") from None


def endpoint_policies(endpoints: list[EndpointConfig]) -> list[Any]:
    """The endpoints as aigw.policies.guardrails.config takes them."""
    from aigw.policies.guardrails.config import EndpointPolicies

    return [EndpointPolicies(e.name, e.policies, e.guardrails, frozenset(e.tasks)) for e in endpoints]


def _name_endpoint(message: str, endpoints: list[EndpointConfig]) -> str:
    """`endpoints[1].policies[0]: ...` -> `endpoints[1] (chat).policies[0]: ...`."""
    match = re.match(r"endpoints\[(\d+)\]", message)
    if match is None or int(match.group(1)) >= len(endpoints):
        return message
    return f"{match.group(0)} ({endpoints[int(match.group(1))].name}){message[match.end():]}"


def _all_destinations(endpoint: EndpointConfig) -> list[tuple[str, DestinationConfig]]:
    """Every destination with its key path, fallbacks included."""
    return [(f"destinations[{j}]", d) for j, d in enumerate(endpoint.destinations)] + [
        (f"fallbacks[{j}]", d) for j, d in enumerate(endpoint.fallbacks)
    ]


def _check_routing(endpoint: EndpointConfig, where: str) -> None:
    labels: set[str] = set()
    for key, destination in _all_destinations(endpoint):
        if destination.label in labels:
            raise ConfigError(f"{where}.{key}.name: two destinations are labelled '{destination.label}': name one of them")
        labels.add(destination.label)
    if endpoint.cooldown.failures < 1 or endpoint.cooldown.seconds < 0:
        raise ConfigError(f"{where}.cooldown: failures must be at least 1 and seconds 0 or more")
    logging = endpoint.payload_logging
    if not 0 <= logging.sample <= 1:
        raise ConfigError(f"{where}.payload_logging.sample: must be between 0 and 1")
    if logging.max_bytes < 1:
        raise ConfigError(f"{where}.payload_logging.max_bytes: must be positive")


def _check_rate_limits(endpoint: EndpointConfig, where: str) -> None:
    if len(endpoint.rate_limits) > MAX_RATE_LIMITS:
        raise ConfigError(f"{where}.rate_limits: at most {MAX_RATE_LIMITS} limits per endpoint, got {len(endpoint.rate_limits)}")
    seen: set[tuple[str, str | None]] = set()
    for k, limit in enumerate(endpoint.rate_limits):
        at = f"{where}.rate_limits[{k}]"
        if limit.key == "endpoint" and limit.principal is not None:
            raise ConfigError(f"{at}.principal: not allowed with key 'endpoint'")
        if limit.key in ("service_principal", "user_group") and limit.principal is None:
            raise ConfigError(f"{at}.principal: required with key '{limit.key}'")
        if limit.principal is not None and not limit.principal.strip():
            raise ConfigError(f"{at}.principal: must not be empty")
        if limit.calls is None and limit.tokens is None:
            raise ConfigError(f"{at}: set calls, tokens or both")
        for field in ("calls", "tokens"):
            value = getattr(limit, field)
            if value is not None and value < 1:
                raise ConfigError(f"{at}.{field}: must be positive")
        if (limit.key, limit.principal) in seen:
            who = f" principal '{limit.principal}'" if limit.principal is not None else ""
            raise ConfigError(f"{at}: duplicate limit for key '{limit.key}'{who}")
        seen.add((limit.key, limit.principal))


def _check_agent(settings: Settings, source: str) -> None:
    from aigw.agent.egress import EgressPolicy
    from aigw.agent.functions import PythonFunction  # late import: it imports this module

    agent = settings.agent
    if agent.max_turns < 1 or agent.max_background_seconds <= 0:
        raise ConfigError(f"{source}: agent: max_turns must be at least 1 and max_background_seconds positive")
    _check_tool_names([c.name for c in agent.connections], f"{source}: agent.connections", "connection")
    _check_tool_names([f.name for f in agent.functions], f"{source}: agent.functions", "function")
    for i, connection in enumerate(agent.connections):
        where = f"{source}: agent.connections[{i}]"
        if (connection.url is None) == (connection.command is None):
            raise ConfigError(f"{where}: set either url (streamable HTTP) or command (stdio)")
        if connection.url is not None and not connection.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.url: must be an http:// or https:// URL")
        if connection.timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be positive")
    for i, function in enumerate(agent.functions):
        where = f"{source}: agent.functions[{i}]"
        if function.timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be positive")
        try:
            PythonFunction.load(function)
        except ValueError as exc:
            raise ConfigError(f"{where}.function: {exc}") from None
    try:
        EgressPolicy(agent.inline_mcp_allowed_hosts)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    tracing = settings.tracing
    if tracing.enabled and tracing.otlp_endpoint is not None:
        try:
            import opentelemetry.exporter.otlp.proto.http  # noqa: F401
        except ImportError:
            raise ConfigError(f"{source}: tracing.otlp_endpoint: needs the opentelemetry-exporter-otlp-proto-http package") from None


def _check_tool_names(names: list[str], where: str, what: str) -> None:
    """Names requests refer to tools by: unique, and valid tool names."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name):
            raise ConfigError(f"{where}[{i}].name: '{name}' must be 1 to 64 letters, digits, underscores or dashes")
        if name in seen:
            raise ConfigError(f"{where}[{i}].name: duplicate {what} name '{name}'")
        seen.add(name)


def _check_store(settings: Settings, source: str) -> None:
    """Where the gateway listens and keeps its data: refused here rather than as a traceback later."""
    if not 1 <= settings.server.port <= 65535:
        raise ConfigError(f"{source}: server.port: must be between 1 and 65535, got {settings.server.port}")
    if settings.database_url is not None:
        scheme = settings.database_url.partition(":")[0].partition("+")[0].lower()
        if scheme not in ("sqlite", "postgres", "postgresql"):
            raise ConfigError(f"{source}: database_url: must be a sqlite:/// or postgresql:// URL")
    server = settings.server
    for i, origin in enumerate(server.cors_origins):
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin.rstrip("/")):
            raise ConfigError(f"{source}: server.cors_origins[{i}]: '{origin}' is not an origin (scheme://host[:port], or *)")
    if (server.tls_cert is None) != (server.tls_key is None):
        raise ConfigError(f"{source}: server: set both tls_cert and tls_key, or neither")


def _check_retention(retention: RetentionConfig, source: str) -> None:
    for field in ("usage_days", "payload_days", "responses_days", "interval_hours"):
        value = getattr(retention, field)
        if value is not None and value <= 0:
            raise ConfigError(f"{source}: retention.{field}: must be positive")
