#!/usr/bin/env python3
"""Real Python MCP clients against one streamable-HTTP MCP URL, step by step.

    clients.py http://127.0.0.1:18080/mcp [--results FILE] [--deadline SECONDS]

Expects the demo gateway's tool `DemoTarget___get_weather(city)` whose text names the
city. Steps:
  mcp SDK (mcp.client.streamable_http.streamable_http_client + mcp.ClientSession):
    initialize, list_tools, call_tool Seattle, call_tool with a non-ASCII city;
  strands-agents (strands.tools.mcp.MCPClient, no model call, no network but the URL):
    list_tools_sync and call_tool_sync in `with MCPClient(lambda: transport):`,
    MCPClient(url=...) (the transport strands builds itself),
    Agent(tools=[MCPClient]) with a direct `agent.tool.<name>(...)` call.
Each step prints PASS/FAIL with its reason and, with --results, appends the same line to
FILE as it goes (run.sh counts them; partial results survive a kill). Steps that could
not run after an earlier failure count as failed. Exit status 1 if any step failed, 3 if
the deadline passed (the steps still pending are then recorded as timed out).
Works on both mcp lines pinned in this folder (1.x and 2.x).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import threading
import time
import traceback
import uuid
from datetime import timedelta
from importlib.metadata import version
from typing import Any, Awaitable, Callable

import anyio

TOOL = "DemoTarget___get_weather"
CITY = "Seattle"
CITY_UTF8 = "São Paulo"
STEP_TIMEOUT = 30  # seconds, each awaited mcp SDK step and strands' startup

# mcp >= 1.24 and 2.x: `streamable_http_client`; older 1.x only had `streamablehttp_client`,
# which 1.x still ships (deprecated) and 2.x removed.
try:
    from mcp.client.streamable_http import streamable_http_client as transport_factory
except ImportError:  # pragma: no cover - only on an mcp older than the pins here
    from mcp.client.streamable_http import streamablehttp_client as transport_factory
from mcp import ClientSession


class StepFailed(Exception):
    pass


def field(obj: Any, snake: str, camel: str) -> Any:
    """mcp 2.x models use snake_case fields, mcp 1.x camelCase."""
    return getattr(obj, snake) if hasattr(obj, snake) else getattr(obj, camel)


def describe(exc: BaseException, depth: int = 0) -> str:
    """One line for an exception, looking inside (anyio) exception groups and following
    explicit causes (strands wraps the transport's error), skipping repeated messages."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e, depth + 1) for e in exc.exceptions)
    text = f"{type(exc).__name__}: {str(exc) or '(no message)'}"
    cause = exc.__cause__
    if cause is not None and depth < 6 and not isinstance(exc, (AssertionError, StepFailed)):
        inner = describe(cause, depth + 1)
        text = inner if str(exc) and str(exc) in inner else f"{text} <- {inner}"
    return text


def is_step_failure(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(is_step_failure(e) for e in exc.exceptions)
    return isinstance(exc, StepFailed)


class Steps:
    """The planned steps of one section, recorded as they pass or fail."""

    def __init__(self, results: str | None) -> None:
        self.results = results
        self.passed = 0
        self.failed = 0
        self.pending: list[str] = []

    def plan(self, title: str, names: list[str]) -> None:
        print(f"\n-- {title}", flush=True)
        self.pending = list(names)

    def record(self, name: str, ok: bool, detail: str) -> None:
        if name in self.pending:
            self.pending.remove(name)
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        line = f"{'PASS' if ok else 'FAIL'} {name}: {detail}"
        print(f"   {line}", flush=True)
        if self.results:
            with open(self.results, "a", encoding="utf-8") as f:
                f.write(line.replace("\n", " ") + "\n")

    def close_section(self, exc: BaseException | None) -> None:
        """After a section: an error outside any step fails the next pending step (or a
        teardown step); whatever is still pending then counts as not run."""
        if exc is not None and not is_step_failure(exc):
            traceback.print_exception(exc, file=sys.stderr)
            name = self.pending[0] if self.pending else "teardown"
            self.record(name, False, describe(exc))
        for name in list(self.pending):
            self.record(name, False, "not run (an earlier step of this client failed)")


def check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def text_of(content: list[Any]) -> str:
    return " ".join(getattr(c, "text", "") for c in content if getattr(c, "type", "") == "text")


# -- mcp SDK ------------------------------------------------------------------------------


async def astep(steps: Steps, name: str, body: Callable[[], Awaitable[str]]) -> None:
    started = time.monotonic()
    try:
        with anyio.fail_after(STEP_TIMEOUT):
            detail = await body()
    except TimeoutError:
        steps.record(name, False, f"no answer within {STEP_TIMEOUT} s")
        raise StepFailed(name) from None
    except Exception as exc:  # noqa: BLE001 - every failure is a failed step
        if not isinstance(exc, AssertionError):
            traceback.print_exc(file=sys.stderr)
        steps.record(name, False, describe(exc))
        raise StepFailed(name) from exc
    steps.record(name, True, f"{detail} [{(time.monotonic() - started) * 1000:.0f} ms]")


async def mcp_sdk(url: str, steps: Steps) -> None:
    names = [
        "mcp: initialize",
        "mcp: list_tools",
        f"mcp: call_tool {TOOL} city={CITY}",
        f"mcp: call_tool {TOOL} city={CITY_UTF8} (UTF-8)",
    ]
    steps.plan(f"mcp SDK {version('mcp')}: streamable_http_client + ClientSession -> {url}", names)
    try:
        async with transport_factory(url) as streams:
            # 1.x yields (read, write, get_session_id), 2.x yields (read, write).
            read, write = streams[0], streams[1]
            get_session_id = streams[2] if len(streams) > 2 else None
            async with ClientSession(read, write) as session:

                async def initialize() -> str:
                    init = await session.initialize()
                    info = field(init, "server_info", "serverInfo")
                    detail = (
                        f"server {info.name} {info.version}, "
                        f"protocol {field(init, 'protocol_version', 'protocolVersion')}"
                    )
                    if get_session_id is not None:
                        detail += f", session id {'set' if get_session_id() else 'none'}"
                    return detail

                async def list_tools() -> str:
                    listed = [t.name for t in (await session.list_tools()).tools]
                    check(TOOL in listed, f"{TOOL} not in the listed tools {listed}")
                    return f"tools {listed}"

                def call(city: str) -> Callable[[], Awaitable[str]]:
                    async def body() -> str:
                        result = await session.call_tool(TOOL, {"city": city})
                        text = text_of(result.content)
                        check(not field(result, "is_error", "isError"), f"isError, text {text!r}")
                        check(city in text, f"{city!r} not in the result text {text!r}")
                        return repr(text)

                    return body

                await astep(steps, names[0], initialize)
                await astep(steps, names[1], list_tools)
                await astep(steps, names[2], call(CITY))
                await astep(steps, names[3], call(CITY_UTF8))
    except Exception as exc:  # noqa: BLE001
        steps.close_section(exc)
    else:
        steps.close_section(None)


# -- strands-agents -----------------------------------------------------------------------


def sstep(steps: Steps, name: str, body: Callable[[], str]) -> None:
    started = time.monotonic()
    try:
        detail = body()
    except Exception as exc:  # noqa: BLE001 - every failure is a failed step
        if not isinstance(exc, AssertionError):
            traceback.print_exc(file=sys.stderr)
        steps.record(name, False, describe(exc))
        raise StepFailed(name) from exc
    steps.record(name, True, f"{detail} [{(time.monotonic() - started) * 1000:.0f} ms]")


def strands_result_text(result: dict[str, Any]) -> str:
    return " ".join(str(c.get("text", "")) for c in result.get("content", []))


def check_strands_result(result: dict[str, Any], city: str) -> str:
    text = strands_result_text(result)
    check(result.get("status") == "success", f"status {result.get('status')!r}, text {text!r}")
    check(city in text, f"{city!r} not in the result text {text!r}")
    return f"status success, {text!r}"


def strands_mcp_client(url: str, steps: Steps) -> None:
    from strands.tools.mcp import MCPClient

    names = ["strands: list_tools_sync", f"strands: call_tool_sync {TOOL} city={CITY}"]
    steps.plan(
        f"strands-agents {version('strands-agents')}: "
        f"MCPClient(lambda: streamable_http_client(url)) -> {url}",
        names,
    )

    def list_tools() -> str:
        listed = [t.tool_name for t in client.list_tools_sync()]
        check(TOOL in listed, f"{TOOL} not in the listed tools {listed}")
        return f"tools {listed}"

    def call() -> str:
        result = client.call_tool_sync(
            tool_use_id=f"e2e-{uuid.uuid4()}",
            name=TOOL,
            arguments={"city": CITY},
            read_timeout_seconds=timedelta(seconds=STEP_TIMEOUT),
        )
        return check_strands_result(result, CITY)

    client = MCPClient(lambda: transport_factory(url), startup_timeout=STEP_TIMEOUT)
    try:
        with client:  # starts the background session: initialize happens here
            sstep(steps, names[0], list_tools)
            sstep(steps, names[1], call)
    except Exception as exc:  # noqa: BLE001
        steps.close_section(exc)
    else:
        steps.close_section(None)


def strands_url_client(url: str, steps: Steps) -> None:
    from strands.tools.mcp import MCPClient

    name = f"strands: MCPClient(url=...) list_tools_sync + call_tool_sync city={CITY}"
    steps.plan("strands-agents: MCPClient(url=url), the transport strands builds", [name])

    def body() -> str:
        with MCPClient(url=url, startup_timeout=STEP_TIMEOUT) as client:
            listed = [t.tool_name for t in client.list_tools_sync()]
            check(TOOL in listed, f"{TOOL} not in the listed tools {listed}")
            result = client.call_tool_sync(
                tool_use_id=f"e2e-{uuid.uuid4()}",
                name=TOOL,
                arguments={"city": CITY},
                read_timeout_seconds=timedelta(seconds=STEP_TIMEOUT),
            )
            return check_strands_result(result, CITY)

    try:
        sstep(steps, name, body)
    except Exception as exc:  # noqa: BLE001
        steps.close_section(exc)
    else:
        steps.close_section(None)


def strands_agent(url: str, steps: Steps) -> None:
    from strands import Agent
    from strands.models.bedrock import BedrockModel
    from strands.tools.mcp import MCPClient

    name = f"strands: Agent(tools=[MCPClient]).tool.{TOOL}(city={CITY})"
    steps.plan("strands-agents: Agent with the MCPClient as tool provider, direct tool call", [name])

    def body() -> str:
        # The model is constructed but never called: a direct tool call skips the model.
        model = BedrockModel(model_id="e2e.not-called", region_name="us-east-1")
        client = MCPClient(lambda: transport_factory(url), startup_timeout=STEP_TIMEOUT)
        agent = Agent(model=model, tools=[client], callback_handler=None)
        try:
            check(TOOL in agent.tool_names, f"{TOOL} not among the agent's tools {agent.tool_names}")
            result = getattr(agent.tool, TOOL)(city=CITY)
            return check_strands_result(result, CITY)
        finally:
            agent.cleanup()

    try:
        sstep(steps, name, body)
    except Exception as exc:  # noqa: BLE001
        steps.close_section(exc)
    else:
        steps.close_section(None)


def main() -> int:
    parser = argparse.ArgumentParser(description="MCP clients against one URL")
    parser.add_argument("url")
    parser.add_argument("--results", help="append one PASS/FAIL line per step to this file")
    parser.add_argument(
        "--deadline",
        type=float,
        default=110,
        help="after this many seconds: fail the pending steps, dump every stack, exit 3",
    )
    args = parser.parse_args()
    # No AWS call is made; keep botocore from looking for credentials on the network.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

    steps = Steps(args.results)

    def overdue() -> None:
        print(f"\nclients.py: deadline of {args.deadline:.0f} s passed", file=sys.stderr, flush=True)
        for name in list(steps.pending):
            steps.record(name, False, f"timed out (deadline {args.deadline:.0f} s)")
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)

    watchdog = threading.Timer(args.deadline, overdue)
    watchdog.daemon = True
    watchdog.start()
    print(f"clients.py: Python {sys.version.split()[0]}, target {args.url}", flush=True)
    anyio.run(mcp_sdk, args.url, steps)
    strands_mcp_client(args.url, steps)
    strands_url_client(args.url, steps)
    strands_agent(args.url, steps)
    watchdog.cancel()
    print(f"\nclients.py: {steps.passed} steps passed, {steps.failed} failed", flush=True)
    return 1 if steps.failed else 0


if __name__ == "__main__":
    sys.exit(main())
