#!/usr/bin/env python3
"""Drive one scripted MCP session with the real Python `mcp` SDK (2.x) and print a transcript.

Usage (with the peers' venv python):
    py_session.py SERVER_ARGV_JSON MODE SCENARIO [OPTS_JSON]

MODE is the SDK's own connect mode: `auto` (probe `server/discover`, fall back to the
`initialize` handshake; a dual-era Python server then speaks 2026-07-28) or `legacy` (the
`initialize` handshake only). SCENARIO names a script below; OPTS_JSON carries what the scenario
needs (a root directory, a canary URL, environment for the server).

The transcript (stdout, one JSON document) lists every step: what was sent (method, params),
what came back (result or error), the progress notifications and the server->client requests
(sampling, elicitation, roots) handled during the step; then the set of server notifications of
the whole session. The Rust tests run the same scenario directly and through `capjail run` and
compare the two transcripts.

Normalizations (only what legitimately differs between two runs of the same session):
  * JSON-RPC ids and progress tokens are never recorded: the SDK picks them, the proxy must not
    care, and the issue says "ids aside".
  * Timestamps: ISO-8601 strings and JS `Date` strings are replaced by "<time>" (file times from
    server-filesystem's get_file_info, the moment a tool ran).
  * Server notifications are compared as a set of distinct (method, params) entries, not a list:
    how many timer-driven notifications (server-everything's simulated logging every 5 s, its
    resource-update ticker) arrive, and in which step, depends on timing alone.
  * `notifications/message` from server-everything's simulated logging carry a random level and
    text: they are kept only as "<simulated log>".
  * server-everything's session id (a random UUID in some tool texts) becomes "<uuid>".
  * A base64 `blob` that decodes to UTF-8 text is compared as that text, normalized as above
    (server-everything's dynamic blob resources embed the wall-clock time they were made).
Nothing else is touched: results, error codes and messages, content, structured content,
annotations, `_meta` and cursors are compared as they are.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from typing import Any

import anyio
import mcp_types as types
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from capjail_env import server_env

# Every wait in this script is bounded: one step may take at most this long.
STEP_TIMEOUT = 30.0

ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
JS_TIME = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{2} \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT[+-]\d{4}( \([^)]*\))?"
)
CLOCK = re.compile(r"\b\d{1,2}:\d{2}:\d{2}( ?[AP]M)?\b")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def norm(v: Any) -> Any:
    if isinstance(v, str):
        v = ISO_TIME.sub("<time>", v)
        v = JS_TIME.sub("<time>", v)
        v = CLOCK.sub("<time>", v)
        return UUID.sub("<uuid>", v)
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm_blob(x) if k == "blob" else norm(x) for k, x in v.items()}
    return v


def norm_blob(b: Any) -> Any:
    """A base64 blob holding text is compared as its normalized text (server-everything's
    dynamic blob resources embed the time they were made)."""
    try:
        text = base64.b64decode(b, validate=True).decode("utf-8")
    except (ValueError, TypeError):
        return b
    return "<base64 of> " + norm(text)


def dump(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return norm(obj.model_dump(mode="json", by_alias=True, exclude_none=True))
    return norm(obj)


class Session:
    def __init__(self, opts: dict[str, Any]):
        self.opts = opts
        self.steps: list[dict[str, Any]] = []
        self.notifications: set[str] = set()
        self.progress: list[dict[str, Any]] = []
        self.server_requests: list[dict[str, Any]] = []

    # -- callbacks the SDK calls ------------------------------------------------------------
    async def on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.notifications.add(json.dumps({"exception": type(message).__name__}))
            return
        n = message.model_dump(mode="json", by_alias=True, exclude_none=True)
        if n.get("method") == "notifications/progress":
            return  # recorded per step by the progress callback (the token is an id)
        if n.get("method") == "notifications/message" and self.opts.get("simulated_logging"):
            n = {"method": n["method"], "params": "<simulated log>"}
        self.notifications.add(json.dumps(norm(n), sort_keys=True))

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append(norm({"progress": progress, "total": total, "message": message}))

    async def on_sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        self.server_requests.append({"method": "sampling/createMessage", "params": dump(params)})
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled by capjail-tests"),
            model="capjail-test-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(self, context: Any, params: types.ElicitRequestParams) -> Any:
        self.server_requests.append({"method": "elicitation/create", "params": dump(params)})
        content = self.opts.get("elicit_content")
        if content is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content=content)

    async def on_roots(self, context: Any) -> Any:
        # The server may ask at any moment (server-everything asks right after the handshake):
        # recorded for the session, not the step.
        self.notifications.add(json.dumps({"server_request": "roots/list"}))
        return types.ListRootsResult(
            roots=[types.Root(uri=r["uri"], name=r.get("name")) for r in self.opts.get("roots", [])]
        )

    # -- steps ------------------------------------------------------------------------------
    async def step(self, name: str, method: str, params: Any, coro_fn) -> Any:
        if self.opts.get("trace"):
            print(f"{time.monotonic():.2f} {name}", file=sys.stderr, flush=True)
        self.progress = []
        self.server_requests = []
        entry: dict[str, Any] = {"step": name, "method": method, "params": norm(params)}
        out = None
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                out = await coro_fn()
            entry["result"] = dump(out)
        except MCPError as e:
            entry["error"] = dump(e.error)
        except TimeoutError:
            entry["error"] = "<timeout>"
        if self.progress:
            entry["progress"] = self.progress
        if self.server_requests:
            entry["server_requests"] = self.server_requests
        self.steps.append(entry)
        return out

    async def call(self, c: Client, name: str, args: dict[str, Any] | None = None, step: str | None = None,
                   progress: bool = False) -> Any:
        return await self.step(
            step or f"call {name}",
            "tools/call",
            {"name": name, "arguments": args or {}},
            lambda: c.call_tool(name, args or {}, progress_callback=self.on_progress if progress else None),
        )

    async def list_all(self, c: Client, what: str) -> list[Any]:
        """Walk every page of a list method, one step per page (cursors are recorded)."""
        fn = {
            "tools": c.list_tools,
            "resources": c.list_resources,
            "resource_templates": c.list_resource_templates,
            "prompts": c.list_prompts,
        }[what]
        method = {"tools": "tools/list", "resources": "resources/list",
                  "resource_templates": "resources/templates/list", "prompts": "prompts/list"}[what]
        items: list[Any] = []
        cursor = None
        for page in range(20):  # bounded: no server here has more than a few pages
            kwargs = {"cursor": cursor} if cursor else {}
            if what == "tools":
                kwargs["cache_mode"] = "refresh"
            r = await self.step(f"{what} page {page}", method, {"cursor": cursor}, lambda: fn(**kwargs))
            if r is None:
                break
            items.extend(getattr(r, {"resource_templates": "resource_templates"}.get(what, what)))
            cursor = r.next_cursor
            if not cursor:
                break
        return items

    def transcript(self, c: Client | None) -> dict[str, Any]:
        return {
            "protocol_version": c.protocol_version if c else None,
            "steps": self.steps,
            "notifications": sorted(self.notifications),
        }


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


async def everything(s: Session, c: Client) -> None:
    tools = await s.list_all(c, "tools")
    names = [t.name for t in tools]
    await s.call(c, "echo", {"message": "hello through capjail"})
    await s.call(c, "get-annotated-message", {"messageType": "success", "includeImage": True})
    await s.call(c, "get-annotated-message", {"messageType": "error"}, step="annotated error")
    await s.call(c, "get-resource-links", {"count": 3})
    await s.call(c, "get-resource-reference", {"resourceType": "Text", "resourceId": 2})
    await s.call(c, "get-resource-reference", {"resourceType": "Blob", "resourceId": 3}, step="blob reference")
    await s.call(c, "get-structured-content", {"location": "Chicago"})
    await s.call(c, "get-sum", {"a": 19, "b": 23})
    await s.call(c, "get-tiny-image")
    # A data: URL: the tool fetches http(s) URLs too, but this test sends nothing off the host.
    await s.call(c, "gzip-file-as-resource",
                 {"name": "hello.txt.gz", "data": "data:text/plain;base64,aGVsbG8gY2FwamFpbAo=", "outputType": "resource"})
    # Timer-driven tools: switched on and straight off again (their notifications are a set).
    await s.call(c, "toggle-simulated-logging", step="simulated logging on")
    await s.call(c, "toggle-simulated-logging", step="simulated logging off")
    await s.call(c, "toggle-subscriber-updates", step="subscriber updates on")
    await s.call(c, "toggle-subscriber-updates", step="subscriber updates off")
    # get-env answers with the server's environment: the Rust test compares it on its own.
    await s.call(c, "get-env")
    # Progress notifications from a long-running operation.
    await s.call(c, "trigger-long-running-operation", {"duration": 1, "steps": 4}, progress=True)
    # Server->client requests (these tools exist because the client declared the capabilities;
    # they were added after the handshake, announced by notifications/tools/list_changed).
    if "trigger-sampling-request" in names:
        await s.call(c, "trigger-sampling-request", {"prompt": "say hi", "maxTokens": 20})
    if "trigger-elicitation-request" in names:
        await s.call(c, "trigger-elicitation-request")
    if "get-roots-list" in names:
        await s.call(c, "get-roots-list")
    # Resources and prompts.
    resources = await s.list_all(c, "resources")
    await s.list_all(c, "resource_templates")
    for r in resources[:3]:
        await s.step(f"read {r.uri}", "resources/read", {"uri": str(r.uri)}, lambda r=r: c.read_resource(str(r.uri)))
    for uri in ["demo://resource/dynamic/text/1", "demo://resource/dynamic/blob/2"]:
        await s.step(f"read {uri}", "resources/read", {"uri": uri}, lambda uri=uri: c.read_resource(uri))
    prompts = await s.list_all(c, "prompts")
    args = {"args-prompt": {"city": "Lyon", "state": "Rhone"},
            "completable-prompt": {"department": "Engineering", "name": "Ada"},
            "resource-prompt": {"resourceType": "Text", "resourceId": "1"}}
    for p in prompts:
        a = args.get(p.name, {})
        await s.step(f"prompt {p.name}", "prompts/get", {"name": p.name, "arguments": a},
                     lambda p=p, a=a: c.get_prompt(p.name, a))
    # (No call to an unknown tool here: capjail refuses a tool it cannot classify, by design.)
    await cancellation(s, c, "trigger-long-running-operation", {"duration": 3, "steps": 30}, ("echo", {"message": "after cancel"}))


async def cancellation(s: Session, c: Client, tool: str, args: dict[str, Any], after: tuple[str, dict[str, Any]]) -> None:
    """Start a long call, cancel it after its first progress notification (the SDK then sends
    notifications/cancelled), and check the session still answers."""
    first = anyio.Event()
    got: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        got.append(progress)
        first.set()

    outcome = "completed"
    with anyio.fail_after(STEP_TIMEOUT):
        async with anyio.create_task_group() as tg:
            async def run() -> None:
                nonlocal outcome
                with anyio.CancelScope() as scope:
                    cancel_scope[0] = scope
                    await c.call_tool(tool, args, progress_callback=on_progress)
                if scope.cancelled_caught:
                    outcome = "cancelled by the client"

            cancel_scope: list[Any] = [None]
            tg.start_soon(run)
            await first.wait()
            cancel_scope[0].cancel()
    s.steps.append({"step": f"cancel {tool}", "method": "tools/call", "params": {"name": tool, "arguments": args},
                    "outcome": outcome, "progress_before_cancel": len(got) >= 1})
    # The session is still in sync after the cancellation.
    await s.call(c, after[0], after[1], step="after cancel")


async def filesystem(s: Session, c: Client) -> None:
    root = s.opts["root"]
    await s.list_all(c, "tools")
    await s.call(c, "list_allowed_directories")
    await s.call(c, "write_file", {"path": f"{root}/a.txt", "content": "alpha\nbeta\ngamma\n"})
    await s.call(c, "read_text_file", {"path": f"{root}/a.txt"})
    await s.call(c, "read_text_file", {"path": f"{root}/a.txt", "head": 2}, step="read head")
    await s.call(c, "read_file", {"path": f"{root}/a.txt"})
    await s.call(c, "read_media_file", {"path": f"{root}/pixel.png"})
    await s.call(c, "read_multiple_files", {"paths": [f"{root}/a.txt", f"{root}/sub/readme.md", f"{root}/missing"]})
    await s.call(c, "edit_file", {"path": f"{root}/a.txt", "edits": [{"oldText": "beta", "newText": "BETA"}],
                                  "dryRun": True}, step="edit dry run")
    await s.call(c, "edit_file", {"path": f"{root}/a.txt", "edits": [{"oldText": "beta", "newText": "BETA"}]})
    await s.call(c, "create_directory", {"path": f"{root}/new/deeper"})
    await s.call(c, "list_directory", {"path": root})
    await s.call(c, "list_directory_with_sizes", {"path": root, "sortBy": "name"})
    await s.call(c, "directory_tree", {"path": root})
    await s.call(c, "move_file", {"source": f"{root}/a.txt", "destination": f"{root}/new/a.txt"})
    await s.call(c, "search_files", {"path": root, "pattern": "**/*.txt"})
    await s.call(c, "get_file_info", {"path": f"{root}/new/a.txt"})
    # The server's own errors: outside its directories, a missing file.
    await s.call(c, "read_text_file", {"path": f"{root}/nope.txt"}, step="missing file")
    await s.list_all(c, "resources")


async def memory(s: Session, c: Client) -> None:
    await s.list_all(c, "tools")
    await s.call(c, "create_entities", {"entities": [
        {"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]},
        {"name": "Engine", "entityType": "machine", "observations": ["analytical"]},
        {"name": "Babbage", "entityType": "person", "observations": ["designed the engine"]},
    ]})
    await s.call(c, "create_relations", {"relations": [
        {"from": "Ada", "to": "Engine", "relationType": "programmed"},
        {"from": "Babbage", "to": "Engine", "relationType": "designed"},
    ]})
    await s.call(c, "add_observations", {"observations": [{"entityName": "Ada", "contents": ["born 1815"]}]})
    await s.call(c, "read_graph")
    await s.call(c, "search_nodes", {"query": "engine"})
    await s.call(c, "open_nodes", {"names": ["Ada", "Nobody"]})
    await s.call(c, "delete_observations", {"deletions": [{"entityName": "Ada", "observations": ["born 1815"]}]})
    await s.call(c, "delete_relations", {"relations": [{"from": "Babbage", "to": "Engine", "relationType": "designed"}]})
    await s.call(c, "delete_entities", {"entityNames": ["Babbage"]})
    await s.call(c, "read_graph", step="final graph")


async def fetch(s: Session, c: Client) -> None:
    url = s.opts["url"]
    await s.list_all(c, "tools")
    await s.call(c, "fetch", {"url": f"{url}/page", "max_length": 2000})
    await s.call(c, "fetch", {"url": f"{url}/raw", "raw": True})
    await s.call(c, "fetch", {"url": f"{url}/slice", "max_length": 5, "start_index": 3}, step="fetch slice")
    # An allowed URL the server fails on (the canary answers 404 there): its own error.
    await s.call(c, "fetch", {"url": f"{url}/robots.txt"}, step="fetch 404")
    prompts = await s.list_all(c, "prompts")
    for p in prompts:
        a = {"url": f"{url}/prompt"}
        await s.step(f"prompt {p.name}", "prompts/get", {"name": p.name, "arguments": a},
                     lambda p=p, a=a: c.get_prompt(p.name, a))


async def git(s: Session, c: Client) -> None:
    repo = s.opts["repo"]
    await s.list_all(c, "tools")
    await s.call(c, "git_status", {"repo_path": repo})
    await s.call(c, "git_log", {"repo_path": repo, "max_count": 5})
    await s.call(c, "git_branch", {"repo_path": repo, "branch_type": "local"})
    await s.call(c, "git_create_branch", {"repo_path": repo, "branch_name": "feature"})
    await s.call(c, "git_checkout", {"repo_path": repo, "branch_name": "feature"})
    with open(f"{repo}/notes.txt", "a") as f:
        f.write("more notes\n")
    with open(f"{repo}/new.txt", "w") as f:
        f.write("new file\n")
    await s.call(c, "git_diff_unstaged", {"repo_path": repo})
    await s.call(c, "git_add", {"repo_path": repo, "files": ["notes.txt", "new.txt"]})
    await s.call(c, "git_diff_staged", {"repo_path": repo})
    await s.call(c, "git_reset", {"repo_path": repo})
    await s.call(c, "git_add", {"repo_path": repo, "files": ["notes.txt"]}, step="add again")
    await s.call(c, "git_commit", {"repo_path": repo, "message": "second"})
    await s.call(c, "git_diff", {"repo_path": repo, "target": "master"})
    await s.call(c, "git_show", {"repo_path": repo, "revision": "HEAD"})
    await s.call(c, "git_log", {"repo_path": repo, "max_count": 5}, step="log after commit")
    await s.call(c, "git_branch", {"repo_path": repo, "branch_type": "all"}, step="branches after")
    # The server's own error, inside the policy: an unknown revision.
    await s.call(c, "git_show", {"repo_path": repo, "revision": "no-such-revision"}, step="bad revision")


async def fixture(s: Session, c: Client) -> None:
    """tests/fixtures/sdk_server.py: pagination, progress, list_changed, cancellation and
    server->client input in both generations (input_required retries in 2026-07-28)."""
    await s.list_all(c, "tools")
    await s.call(c, "add", {"a": 2, "b": 40})
    await s.call(c, "blocked_tool", {"x": "called by name"})
    await s.call(c, "slow", {"steps": 3}, progress=True)
    await s.call(c, "ask_user", {"question": "colour?"})
    await s.call(c, "summarise", {"text": "capjail"})
    await s.call(c, "where_am_i")
    await s.call(c, "grow", {})
    await s.list_all(c, "tools")
    await s.list_all(c, "resources")
    await s.step("read fixture://note", "resources/read", {"uri": "fixture://note"},
                 lambda: c.read_resource("fixture://note"))
    await s.list_all(c, "prompts")
    await s.step("prompt greet", "prompts/get", {"name": "greet", "arguments": {"who": "Ada"}},
                 lambda: c.get_prompt("greet", {"who": "Ada"}))
    await cancellation(s, c, "slow", {"steps": 50}, ("add", {"a": 1, "b": 1}))


async def fs_roots(s: Session, c: Client) -> None:
    """What the filesystem server made of the client's roots (it replaces its directories)."""
    await anyio.sleep(0.3)  # the server asks for roots right after the handshake
    await s.call(c, "list_allowed_directories")


SCENARIOS = {"fs_roots": fs_roots, "everything": everything, "filesystem": filesystem, "memory": memory, "fetch": fetch,
             "git": git, "fixture": fixture}


async def main() -> None:
    argv = json.loads(sys.argv[1])
    mode = sys.argv[2]
    scenario = SCENARIOS[sys.argv[3]]
    opts = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    s = Session(opts)
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=server_env(opts.get("env")),
                                   cwd=opts.get("cwd"))
    kw: dict[str, Any] = {}
    if opts.get("callbacks", True):
        kw = dict(sampling_callback=s.on_sampling, elicitation_callback=s.on_elicitation,
                  list_roots_callback=s.on_roots)
    with anyio.fail_after(opts.get("session_timeout", 120)):
        async with Client(params, mode=mode, message_handler=s.on_message, raise_exceptions=True,
                          read_timeout_seconds=STEP_TIMEOUT,
                          client_info=types.Implementation(name="capjail-py-session", version="1"), **kw) as c:
            await scenario(s, c)
            # Let late, deterministic notifications (list_changed after a step) arrive.
            await anyio.sleep(0.2)
            out = s.transcript(c)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    anyio.run(main)
