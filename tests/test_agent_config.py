"""The agent section of the configuration: mistakes stop the start with the file, the key and what
is wrong (a function that cannot be imported included), and a good section loads."""

from __future__ import annotations

import textwrap

import pytest

from aigw.config import ConfigError, load_settings


def load(tmp_path, text: str):
    path = tmp_path / "aigw.yaml"
    path.write_text(textwrap.dedent(text))
    return load_settings(path, environ={})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("agent: {connections: [{name: w}]}", "agent.connections[0]: set either url (streamable HTTP) or command (stdio)"),
        ("agent: {connections: [{name: w, url: 'http://x/mcp', command: run}]}", "agent.connections[0]: set either url"),
        ("agent: {connections: [{name: w, url: 'ftp://x'}]}", "agent.connections[0].url: must be an http:// or https:// URL"),
        ("agent: {connections: [{name: 'bad name', url: 'http://x'}]}", "agent.connections[0].name: 'bad name'"),
        ("agent: {connections: [{name: w, url: 'http://x'}, {name: w, command: run}]}", "duplicate connection name 'w'"),
        ("agent: {connections: [{name: w, url: 'http://x', require_approval: sometimes}]}", "agent.connections[0].require_approval"),
        ("agent: {functions: [{name: f, function: 'tests.agent_functions:nope'}]}", "agent.functions[0].function:"),
        ("agent: {functions: [{name: f, function: 'no_such_module_here:f'}]}", "agent.functions[0].function:"),
        ("agent: {functions: [{name: f, function: 'tests.agent_functions:variadic'}]}", "agent.functions[0].function:"),
        ("agent: {functions: [{name: f, function: 'tests.agent_functions:add', timeout: 0}]}", "agent.functions[0].timeout: must be positive"),
        ("agent: {max_turns: 0}", "agent: max_turns must be at least 1"),
        ("agent: {inline_mcp_allowed_hosts: ['10.0.0.0/33']}", "agent.inline_mcp_allowed_hosts: '10.0.0.0/33' is not a host name"),
        ("agent: {inline_mcp_allowed_hosts: ['']}", "agent.inline_mcp_allowed_hosts: '' is not a host name"),
        ("agent: {colour: red}", "Object contains unknown field `colour`"),
    ],
)
def test_agent_config_errors(tmp_path, config, expected):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, config)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / "aigw.yaml")) and expected in message, message


def test_agent_config_loads(tmp_path):
    settings = load(
        tmp_path,
        """
        agent:
          max_turns: 4
          connections:
            - {name: weather, url: 'https://mcp.example.com/mcp', headers: {Authorization: Bearer x}, require_approval: never}
            - {name: files, command: uvx, args: [server], env: {A: b}}
          functions:
            - {name: add, function: 'tests.agent_functions:add'}
        tracing: {enabled: true, file: spans.jsonl}
        """,
    )
    assert settings.agent.max_turns == 4 and [c.name for c in settings.agent.connections] == ["weather", "files"]
    assert settings.agent.connections[1].require_approval == "always"  # the safe default
    assert settings.tracing.file == "spans.jsonl"
