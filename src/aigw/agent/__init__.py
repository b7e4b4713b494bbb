"""The server-side agent loop of /mlflow/v1/responses: hosted tools (MCP servers, Python functions), stored responses, background runs."""
