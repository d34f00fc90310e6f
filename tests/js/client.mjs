// Drives a server through mcp-warden with the official TypeScript SDK client, unchanged.
// Usage: node client.mjs <url> <streamable|sse> <everything|time|fixture> [--token T]
// Prints one JSON object with what it observed; the Rust test asserts on it.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const [url, kind, scenario, ...rest] = process.argv.slice(2);
const tokenAt = rest.indexOf("--token");
const token = tokenAt >= 0 ? rest[tokenAt + 1] : undefined;
const requestInit = token ? { headers: { Authorization: `Bearer ${token}` } } : undefined;

const transport =
  kind === "sse"
    ? new SSEClientTransport(new URL(url), { requestInit, eventSourceInit: token ? { fetch: (u, init) => fetch(u, { ...init, headers: { ...init?.headers, Authorization: `Bearer ${token}` } }) } : undefined })
    : new StreamableHTTPClientTransport(new URL(url), { requestInit });

const client = new Client(
  { name: "mcp-warden-test", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } },
);
const seen = { sampling: 0, elicitation: 0, roots: 0 };
client.setRequestHandler(CreateMessageRequestSchema, async () => {
  seen.sampling++;
  return { role: "assistant", content: { type: "text", text: "sampled-by-ts-client" }, model: "test-model", stopReason: "endTurn" };
});
client.setRequestHandler(ElicitRequestSchema, async () => {
  seen.elicitation++;
  return { action: "accept", content: { name: "Ada Lovelace", check: true, email: "ada@example.com" } };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
  seen.roots++;
  return { roots: [{ uri: "file:///work", name: "work" }] };
});
let transportErrors = [];
client.onerror = (e) => transportErrors.push(String(e?.message ?? e));

const out = {};
await client.connect(transport);
out.server = client.getServerVersion()?.name;
out.protocolVersion = transport.protocolVersion ?? null;
out.sessionId = transport.sessionId ?? null;

const textOf = (r) => r.content?.find((c) => c.type === "text")?.text;

if (scenario === "everything") {
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  out.echo = textOf(await client.callTool({ name: "echo", arguments: { message: "hello from ts" } }));
  out.sum = textOf(await client.callTool({ name: "get-sum", arguments: { a: 2, b: 3 } }));
  const resources = (await client.listResources()).resources;
  out.resourceCount = resources.length;
  const read = await client.readResource({ uri: resources[0].uri });
  out.resourceRead = read.contents[0].uri === resources[0].uri && (read.contents[0].text ?? read.contents[0].blob ?? "").length > 0;
  out.templates = (await client.listResourceTemplates()).resourceTemplates.length;
  out.prompts = (await client.listPrompts()).prompts.map((p) => p.name).sort();
  out.promptMessages = (await client.getPrompt({ name: "args-prompt", arguments: { city: "Paris", state: "IDF" } })).messages.length;
  let progress = [];
  out.longRunning = textOf(
    await client.callTool({ name: "trigger-long-running-operation", arguments: { duration: 1, steps: 3 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    }),
  );
  out.progress = progress;
  out.sampling = JSON.stringify((await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 5 } })).content);
  out.elicitation = JSON.stringify((await client.callTool({ name: "trigger-elicitation-request", arguments: {} })).content);
  out.ping = JSON.stringify(await client.ping());
  out.env = textOf(await client.callTool({ name: "get-env", arguments: {} }));
} else if (scenario === "time") {
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  const r = await client.callTool({ name: "get_current_time", arguments: { timezone: "UTC" } });
  out.time = JSON.parse(textOf(r));
} else if (scenario === "fixture") {
  out.echo = textOf(await client.callTool({ name: "echo", arguments: { text: "fixture via ts" } }));
}
out.seen = seen;
out.transportErrors = transportErrors;
if (kind !== "sse") {
  await transport.terminateSession();
}
await client.close();
console.log(JSON.stringify(out));
