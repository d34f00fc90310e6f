// Runs a scripted sequence of MCP operations through mcp-warden with the official TypeScript
// SDK client, unchanged, and prints what each step returned, for policy tests to assert on.
// Usage: node policy.mjs <url> <streamable|sse> '<steps as JSON>'
// Steps: {"op":"listTools"} | {"op":"call","name":…,"args":{…}} | {"op":"listResources"}
//      | {"op":"read","uri":…} | {"op":"listPrompts"} | {"op":"prompt","name":…,"args":{…}}
//      | {"op":"wait","file":…} (holds the session until the file exists)
// Output: one JSON array, per step {"ok": result} or {"error": {"code","message","data"}}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { existsSync } from "node:fs";

const [url, kind, stepsJson] = process.argv.slice(2);
const steps = JSON.parse(stepsJson);
const transport =
  kind === "sse" ? new SSEClientTransport(new URL(url)) : new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "mcp-warden-policy-test", version: "1.0.0" }, { capabilities: {} });
await client.connect(transport);

const out = [];
for (const step of steps) {
  try {
    let r;
    switch (step.op) {
      case "listTools":
        r = (await client.listTools()).tools.map((t) => t.name).sort();
        break;
      case "call":
        r = await client.callTool({ name: step.name, arguments: step.args ?? {} });
        break;
      case "listResources":
        r = (await client.listResources()).resources.map((x) => x.uri);
        break;
      case "read":
        r = await client.readResource({ uri: step.uri });
        break;
      case "listPrompts":
        r = (await client.listPrompts()).prompts.map((p) => p.name).sort();
        break;
      case "prompt":
        r = await client.getPrompt({ name: step.name, arguments: step.args ?? {} });
        break;
      case "wait":
        while (!existsSync(step.file)) await new Promise((done) => setTimeout(done, 50));
        r = true;
        break;
      default:
        throw new Error(`unknown step ${step.op}`);
    }
    out.push({ ok: r });
  } catch (e) {
    out.push({ error: { code: e?.code ?? null, message: String(e?.message ?? e), data: e?.data ?? null } });
  }
}
if (kind !== "sse") {
  await transport.terminateSession().catch(() => {});
}
await client.close();
console.log(JSON.stringify(out));
