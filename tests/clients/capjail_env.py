"""The environment a real client gives the server it starts (capjail, in these tests).

The MCP SDKs pass the server only a few variables (HOME, PATH, ...). The tests keep capjail's
state (tool pins) in their own folder through XDG_STATE_HOME, so it is passed on as well:
capjail started by a client must never write the user's ~/.local/state.
"""

from __future__ import annotations

import os

from mcp.client.stdio import get_default_environment


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(get_default_environment() if base is None else base)
    if "XDG_STATE_HOME" in os.environ:
        env["XDG_STATE_HOME"] = os.environ["XDG_STATE_HOME"]
    return env
