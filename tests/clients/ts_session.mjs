// A scripted MCP session driven by a REAL TypeScript client, printing a normalized JSON transcript
// on stdout (and nothing else). capjail's transparency tests (tests/transparency_ts.rs) run the
// same scenario twice -- against the server directly and through `capjail run` -- and compare the
// two transcripts.
//
//   node ts_session.mjs SCENARIO.json
//
// SCENARIO (JSON, written by the Rust test):
//   client:   "v2" -> @modelcontextprotocol/client 2.x, "v1" -> @modelcontextprotocol/sdk 1.x
//   era:      "legacy" (initialize handshake) or "modern" (2026-07-28: server/discover, _meta on every
//             request, input_required results retried with a new id; v2 only)
//   modules:  folder holding node_modules/@modelcontextprotocol/{client,sdk}
//   server:   {command, args, env, cwd}   (through capjail the command is `capjail run ... --`)
//   roots:    roots the client offers (roots/list)
//   replace:  [[literal, placeholder], ...] per-run strings (temp folders) to normalize
//   steps:    [{op, params, progress, cancelAfterProgress, sleepMs}, ...]
//   elicitAction: optional "decline" / "cancel": how elicitation requests are answered
//             (default: accept, every field filled)
//
// The transcript: the connect outcome (protocol version, era, server info, capabilities,
// instructions), every step's result or error (with its progress notifications in order), every
// server->client request the client handled, and every notification the client received (from a
// tap on the transport, so notifications the client consumes internally are seen too).
//
// Normalizations -- ONLY what legitimately differs between two runs, each with its reason:
//   N1 JSON-RPC ids are not recorded at all (the transcript is API level; the wire tap drops `id`):
//      ids are chosen by the client and capjail may remap them.
//   N2 `replace` literals (the per-run temp folder) become placeholders: each run has its own folder.
//   N3 timestamps (ISO 8601, JavaScript Date strings, git's dates, times of day) become "<TIME>",
//      also inside base64 `blob`s of text: file times and "created at" stamps are the clock's.
//   N4 notifications are compared as a sorted list, not in arrival order: server-everything sends
//      some from timers (root sync 350 ms after initialized, list_changed while registering
//      tools), so their interleaving with other traffic is timing. Progress notifications of a
//      step stay in their own ordered list (their order is the protocol's).
//   N5 server-everything's simulated logging picks a random level and message
//      (Math.random): `level` and `data` of those log notifications become "<RANDOM>".
//   N6 progressToken values are chosen by the client (they are request ids in both SDKs): "<TOKEN>".
//   N7 a step's progress notifications are taken from the transport tap, in order, up to the moment
//      the step settled. Not from the client's onprogress callback: the 1.x SDK drops a progress
//      notification that arrives in the same read chunk as the response (it dispatches
//      notifications a microtask later, after the response removed the handler), so what the
//      callback sees depends on how the bytes were chunked. Progress that arrives after a step
//      settled (a cancelled operation that keeps running on the server) is timing and not kept.
// Nothing else is touched: results, error codes and messages, tool lists, descriptions, schemas
// and the server->client requests must be byte-for-byte the same through capjail.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

// stdout carries the transcript only: the SDKs' own console chatter goes to stderr.
for (const k of ["log", "info", "warn", "debug"]) console[k] = (...a) => process.stderr.write(a.join(" ") + "\n");

const scenario = JSON.parse(readFileSync(process.argv[2], "utf8"));
const log = (...a) => process.stderr.write(`ts_session: ${a.join(" ")}\n`);
const mod = (rel) => import(pathToFileURL(join(scenario.modules, "node_modules", rel)).href);

// Bound the whole session in time, whatever happens.
const DEADLINE_MS = scenario.deadlineMs ?? 60000;
setTimeout(() => {
  log(`deadline of ${DEADLINE_MS} ms exceeded`);
  process.exit(3);
}, DEADLINE_MS).unref();

let Client, StdioClientTransport, getDefaultEnvironment, schemas = null;
if (scenario.client === "v2") {
  ({ Client } = await mod("@modelcontextprotocol/client/dist/index.mjs"));
  ({ StdioClientTransport, getDefaultEnvironment } = await mod("@modelcontextprotocol/client/dist/stdio.mjs"));
} else if (scenario.client === "v1") {
  ({ Client } = await mod("@modelcontextprotocol/sdk/dist/esm/client/index.js"));
  ({ StdioClientTransport, getDefaultEnvironment } = await mod("@modelcontextprotocol/sdk/dist/esm/client/stdio.js"));
  schemas = await mod("@modelcontextprotocol/sdk/dist/esm/types.js");
} else {
  throw new Error(`unknown client ${scenario.client}`);
}

// ---- normalization -------------------------------------------------------------------------
const TIME_RES = [
  /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?/g, // ISO 8601
  /(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{1,2} \d{4} \d{2}:\d{2}:\d{2}( GMT[+-]\d{4}( \([^)]*\))?)?/g, // Date#toString
  /\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2})?/g, // git / Python str(datetime)
  /\b\d{1,2}:\d{2}:\d{2}( ?[AP]M)?/g, // Date#toLocaleTimeString (server-everything's resources)
];
// A base64 `blob` whose decoded text carries a timestamp is normalized inside (N3).
const normBlob = (b) => {
  const text = Buffer.from(b, "base64").toString("utf8");
  if (Buffer.from(text, "utf8").toString("base64") !== b) return b; // binary: leave it alone
  const n = replaceStr(text);
  return n === text ? b : Buffer.from(n, "utf8").toString("base64");
};
const replaceStr = (s) => {
  for (const [lit, ph] of scenario.replace ?? []) s = s.split(lit).join(ph); // N2
  for (const re of TIME_RES) s = s.replace(re, "<TIME>"); // N3
  return s;
};
const norm = (v) => {
  if (typeof v === "string") return replaceStr(v);
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v)) {
      if (k === "progressToken") o[k] = "<TOKEN>"; // N6
      else if (k === "blob" && typeof v[k] === "string") o[k] = normBlob(v[k]); // N3
      else o[k] = norm(v[k]);
    }
    return o;
  }
  return v;
};
const errInfo = (e) => {
  const o = { name: e?.constructor?.name ?? typeof e, message: String(e?.message ?? e) };
  if (e && e.code !== undefined) o.code = e.code;
  if (e && e.data !== undefined) o.data = e.data;
  return norm(o);
};

// ---- the client ----------------------------------------------------------------------------
const capabilities = scenario.capabilities ?? {};
const options = { capabilities };
if (scenario.era === "modern") {
  if (scenario.client !== "v2") throw new Error("the 2026-07-28 generation needs client v2");
  options.versionNegotiation = { mode: { pin: "2026-07-28" } };
}
const client = new Client({ name: "capjail-transparency", version: "1.0.0" }, options);

const serverRequests = [];
const onReq = (method, handler) => {
  const h = async (req) => {
    serverRequests.push(norm({ method, params: req.params ?? {} }));
    return handler(req);
  };
  if (scenario.client === "v2") client.setRequestHandler(method, h);
  else {
    const schema = {
      "roots/list": schemas.ListRootsRequestSchema,
      "sampling/createMessage": schemas.CreateMessageRequestSchema,
      "elicitation/create": schemas.ElicitRequestSchema,
    }[method];
    client.setRequestHandler(schema, h);
  }
};
if (capabilities.roots) onReq("roots/list", async () => ({ roots: scenario.roots ?? [] }));
if (capabilities.sampling)
  onReq("sampling/createMessage", async () => ({
    role: "assistant",
    content: { type: "text", text: "canned sampling reply from the transparency client" },
    model: "capjail-test-model",
    stopReason: "endTurn",
  }));
if (capabilities.elicitation)
  onReq("elicitation/create", async (req) => {
    if (req.params?.mode === "url") return { action: "decline" };
    // The approval tests (tests/approvals.rs) answer capjail's question with this action.
    if (scenario.elicitAction && scenario.elicitAction !== "accept") return { action: scenario.elicitAction };
    // Fill every required field of the requested schema with a plausible value.
    const content = {};
    const props = req.params?.requestedSchema?.properties ?? {};
    for (const [k, p] of Object.entries(props)) {
      if (p.enum) content[k] = p.enum[0];
      else if (p.oneOf) content[k] = p.oneOf[0].const;
      else if (p.type === "boolean") content[k] = true;
      else if (p.type === "number" || p.type === "integer") content[k] = p.minimum ?? 1;
      else if (p.type === "array") content[k] = p.items?.enum ? [p.items.enum[0]] : p.items?.anyOf ? [p.items.anyOf[0].const] : [];
      else if (p.format === "email") content[k] = "tester@example.test";
      else if (p.format === "uri") content[k] = "https://example.test/";
      else if (p.format === "date") content[k] = "2026-01-02";
      else if (p.format === "date-time") content[k] = "2026-01-02T03:04:05Z";
      else content[k] = p.default ?? "transparency";
    }
    return { action: "accept", content };
  });

const notifications = [];
// progressToken (as JSON) -> the list the running step collects into (N7).
const progressSinks = new Map();
const transport = new StdioClientTransport({
  command: scenario.server.command,
  args: scenario.server.args ?? [],
  // capjail's state (pins) stays in the tests' folder: the SDK passes only HOME, PATH...
  env: {
    ...getDefaultEnvironment(),
    ...(process.env.XDG_STATE_HOME ? { XDG_STATE_HOME: process.env.XDG_STATE_HOME } : {}),
    ...(scenario.server.env ?? {}),
  },
  cwd: scenario.server.cwd,
  stderr: "pipe",
});
const serverStderr = [];
transport.stderr?.on("data", (d) => serverStderr.push(String(d)));
// Tap: every message from the server, seen before the client handles it.
const tap = (t) => {
  const start = t.start.bind(t);
  t.start = async () => {
    const inner = t.onmessage;
    t.onmessage = (msg, extra) => {
      if (msg && msg.method === "notifications/progress" && msg.id === undefined) {
        const sink = progressSinks.get(JSON.stringify(msg.params?.progressToken));
        if (sink) sink.push(norm({ ...msg.params }));
      }
      if (msg && msg.method && msg.id === undefined && msg.method !== "notifications/progress") {
        let n = { method: msg.method, params: msg.params ?? {} };
        if (n.method === "notifications/message" && /-level message|level-message/.test(String(n.params.data))) {
          n = { ...n, params: { ...n.params, level: "<RANDOM>", data: "<RANDOM>" } }; // N5
        }
        notifications.push(JSON.stringify(norm(n)));
      }
      return inner?.(msg, extra);
    };
    return start();
  };
  const send = t.send.bind(t);
  t.send = (msg, opts) => {
    const tok = msg?.params?._meta?.progressToken;
    if (msg?.method && tok !== undefined && currentProgress) progressSinks.set(JSON.stringify(tok), currentProgress);
    return send(msg, opts);
  };
};
let currentProgress = null;
tap(transport);

// Exit only once stdout is flushed (a pipe write is asynchronous in Node).
function emit(o) {
  process.stdout.write(JSON.stringify(o, null, 1) + "\n", () => process.exit(0));
}

const out = { client: scenario.client, era: scenario.era, steps: [] };
try {
  await client.connect(transport, { timeout: 30000 });
} catch (e) {
  out.connectError = errInfo(e);
  out.serverStderr = serverStderr.join("").slice(-4000);
  emit(out);
}
out.protocolVersion = client.getNegotiatedProtocolVersion?.() ?? transport.protocolVersion ?? null;
out.protocolEra = client.getProtocolEra?.() ?? "legacy";
out.serverInfo = norm(client.getServerVersion());
out.serverCapabilities = norm(client.getServerCapabilities());
out.instructions = norm(client.getInstructions() ?? null);

// ---- the steps -----------------------------------------------------------------------------
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const call = (op, params, opts) => {
  const v2 = scenario.client === "v2";
  switch (op) {
    case "ping": return client.ping(opts);
    case "tools/list": return client.listTools(params, opts);
    case "tools/call": return v2 ? client.callTool(params, opts) : client.callTool(params, undefined, opts);
    case "resources/list": return client.listResources(params, opts);
    case "resources/templates/list": return client.listResourceTemplates(params, opts);
    case "resources/read": return client.readResource(params, opts);
    case "resources/subscribe": return client.subscribeResource(params, opts);
    case "resources/unsubscribe": return client.unsubscribeResource(params, opts);
    case "prompts/list": return client.listPrompts(params, opts);
    case "prompts/get": return client.getPrompt(params, opts);
    case "completion/complete": return client.complete(params, opts);
    case "logging/setLevel": return client.setLoggingLevel(params.level, opts);
    case "server/discover": return client.discover(opts);
    default: throw new Error(`unknown op ${op}`);
  }
};
for (const step of scenario.steps) {
  const rec = { op: step.op };
  if (step.params !== undefined) rec.params = norm(step.params);
  if (step.op === "sleep") {
    await sleep(Math.min(step.ms ?? 0, 10000));
    out.steps.push(rec);
    continue;
  }
  if (step.op === "roots/list_changed") {
    await client.sendRootsListChanged();
    out.steps.push(rec);
    continue;
  }
  const progress = [];
  let seen = 0;
  const ac = new AbortController();
  const opts = { timeout: 30000 };
  if (step.progress || step.cancelAfterProgress) {
    currentProgress = progress;
    opts.onprogress = () => {
      seen += 1;
      if (step.cancelAfterProgress && seen >= step.cancelAfterProgress) ac.abort("cancelled by the transparency test");
    };
  }
  if (step.cancelAfterProgress) opts.signal = ac.signal;
  try {
    rec.result = norm(await call(step.op, step.params, opts));
  } catch (e) {
    rec.error = errInfo(e);
  }
  currentProgress = null;
  if (progress.length || step.progress || step.cancelAfterProgress) rec.progress = progress.slice(); // N7: a copy, frozen now
  for (const [k, v] of progressSinks) if (v === progress) progressSinks.delete(k);
  out.steps.push(rec);
  if (step.sleepMs) await sleep(Math.min(step.sleepMs, 10000));
}
out.serverRequests = serverRequests;
out.notifications = notifications.sort(); // N4
try {
  await client.close();
} catch (e) {
  log(`close: ${e}`);
}
emit(out);
