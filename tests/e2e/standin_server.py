#!/usr/bin/env python3
"""Stand-in for the proxy's `demo` command, for developing and debugging clients.py.

A plain-HTTP MCP server from the Python `mcp` SDK offering the same tool as the demo
AgentCore-like gateway: `DemoTarget___get_weather(city)` -> "Weather in <city>: 22°C,
sunny". It answers with JSON bodies (not SSE), like the gateway, unless --sse is given.
It talks to nothing but its own 127.0.0.1 listener.

    E2E_TARGET=standin bash tests/e2e/run.sh        # what run.sh does with it
    tests/e2e/.venv/bin/python tests/e2e/standin_server.py --port 18080
    tests/e2e/.venv/bin/python tests/e2e/clients.py http://127.0.0.1:18080/mcp

Works with both mcp lines pinned here: FastMCP on mcp 1.x, MCPServer on mcp 2.x.
"""

from __future__ import annotations

import argparse

import uvicorn

TOOL_NAME = "DemoTarget___get_weather"
DESCRIPTION = "Current weather for a city (demo data)."


def get_weather(city: str) -> str:
    return f"Weather in {city}: 22°C, sunny"


def build_app(json_response: bool, host: str):
    """The Starlette app serving MCP streamable HTTP on /mcp, on either mcp major line."""
    try:  # mcp 2.x
        from mcp.server.mcpserver import MCPServer
    except ImportError:  # mcp 1.x
        MCPServer = None

    if MCPServer is not None:
        server = MCPServer("demo-standin")
        server.tool(name=TOOL_NAME, description=DESCRIPTION)(get_weather)
        return server.streamable_http_app(
            streamable_http_path="/mcp", json_response=json_response, host=host
        )

    from mcp.server.fastmcp import FastMCP

    server = FastMCP(
        "demo-standin", host=host, streamable_http_path="/mcp", json_response=json_response
    )
    server.tool(name=TOOL_NAME, description=DESCRIPTION)(get_weather)
    return server.streamable_http_app()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--sse", action="store_true", help="answer POSTs with SSE streams")
    args = parser.parse_args()
    app = build_app(json_response=not args.sse, host=args.host)
    print(f"standin: MCP on http://{args.host}:{args.port}/mcp, tool {TOOL_NAME}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
