#!/usr/bin/env python3
"""The real Python `mcp` client asking for a call that capjail holds for approval.

Usage: py_approval.py ARGV_JSON MODE OPTS_JSON
  ARGV_JSON  the command to spawn (capjail run ... -- server)
  MODE       the SDK's connect mode: `auto` (2026-07-28 where the server speaks it) or `legacy`
  OPTS_JSON  {"answer": "approve" | "approve_session" | "decline" | "cancel" | "wait" | null,
              "calls": [[tool, args], ...],     # called one after the other
              "concurrent": [tool, args] | null}  # while the first question is open: a ping and
                                                  # this call must complete before the answer is given
`answer: null` gives the client no elicitation callback (it does not declare the capability);
`wait` never answers (capjail's time limit decides).
Prints {"elicitations": [...], "results": [...], "concurrent": [...]} as JSON on stdout.
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



def dump(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    return obj


async def main() -> None:
    argv = json.loads(sys.argv[1])
    mode = sys.argv[2]
    opts = json.loads(sys.argv[3])
    answer = opts.get("answer")
    out: dict[str, Any] = {"elicitations": [], "results": [], "concurrent": []}
    concurrent_done = anyio.Event()
    client: Client | None = None

    async def concurrently() -> None:
        assert client is not None
        await client.send_ping()
        out["concurrent"].append("ping ok")
        tool, args = opts["concurrent"]
        r = await client.call_tool(tool, args)
        out["concurrent"].append({"tool": tool, "result": dump(r)})
        concurrent_done.set()

    async def on_elicitation(context: Any, params: types.ElicitRequestParams) -> Any:
        out["elicitations"].append(dump(params))
        if opts.get("concurrent") and len(out["elicitations"]) == 1:
            # The question is open: other traffic must still flow through capjail.
            tg.start_soon(concurrently)
            with anyio.fail_after(30):
                await concurrent_done.wait()
        if answer == "wait":
            await anyio.sleep_forever()
        if answer == "decline":
            return types.ElicitResult(action="decline")
        if answer == "cancel":
            return types.ElicitResult(action="cancel")
        content: dict[str, Any] = {"approve": True}
        if answer == "approve_session":
            content["remember"] = True
        return types.ElicitResult(action="accept", content=content)

    params = StdioServerParameters(command=argv[0], args=argv[1:], env=server_env())
    kw: dict[str, Any] = {}
    if answer is not None:
        kw["elicitation_callback"] = on_elicitation
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            async with Client(params, mode=mode, raise_exceptions=True, read_timeout_seconds=60,
                              client_info=types.Implementation(name="capjail-py-approval", version="1"), **kw) as c:
                client = c
                for tool, args in opts["calls"]:
                    try:
                        r = await c.call_tool(tool, args)
                        out["results"].append({"ok": dump(r)})
                    except MCPError as e:
                        out["results"].append({"error": {"code": e.code, "message": e.message, "data": e.data}})
                out["protocol"] = str(c.session.protocol_version)
            tg.cancel_scope.cancel()
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    anyio.run(main)
