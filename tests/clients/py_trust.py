#!/usr/bin/env python3
"""The real Python `mcp` SDK client (2.x) against a server, for tests/trust_pins.rs: list the tools
(every page), then call each tool named on the command line, and print what the client saw.

Usage (with the peers' venv python):
    py_trust.py SERVER_ARGV_JSON MODE CALLS_JSON
MODE: `auto` (2026-07-28 with a dual-era server) or `legacy` (the initialize handshake).
CALLS_JSON: [[tool, arguments], ...]; a call named "!relist" lists the tools again.

Output (stdout, one JSON document): {"protocol_version", "lists": [[{name, description}...]...],
"calls": [{"tool", "result" | "error"}...]}.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from capjail_env import server_env



async def list_tools(c: Client) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        kwargs: dict[str, Any] = {"cache_mode": "refresh"}
        if cursor:
            kwargs["cursor"] = cursor
        r = await c.list_tools(**kwargs)
        tools += [{"name": t.name, "description": t.description} for t in r.tools]
        cursor = r.next_cursor
        if not cursor:
            break
    return tools


async def main() -> None:
    argv = json.loads(sys.argv[1])
    mode = sys.argv[2]
    calls = json.loads(sys.argv[3])
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=server_env())
    out: dict[str, Any] = {"lists": [], "calls": []}
    with anyio.fail_after(90):
        async with Client(params, mode=mode, raise_exceptions=True, read_timeout_seconds=30,
                          client_info=types.Implementation(name="capjail-py-trust", version="1")) as c:
            out["protocol_version"] = c.protocol_version
            out["lists"].append(await list_tools(c))
            for tool, args in calls:
                if tool == "!relist":
                    await anyio.sleep(0.3)
                    out["lists"].append(await list_tools(c))
                    continue
                entry: dict[str, Any] = {"tool": tool}
                try:
                    r = await c.call_tool(tool, args)
                    entry["result"] = r.model_dump(mode="json", by_alias=True, exclude_none=True)
                except MCPError as e:
                    entry["error"] = e.error.model_dump(mode="json", by_alias=True, exclude_none=True)
                out["calls"].append(entry)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    anyio.run(main)
