// A local STDIO MCP client (the official TypeScript SDK) reaching a protected server through
// mcp-remote (npm), the bridge stdio-only clients use: mcp-remote signs the user in on its
// own (metadata discovery, registration, PKCE, its loopback callback), opening the browser
// with the command in $BROWSER, and then relays the calls.
//
// Usage: node mcp-remote-client.mjs <url>
//   MCP_REMOTE_CONFIG_DIR (where mcp-remote keeps its client and tokens) and BROWSER (the
//   opener it calls with the authorization URL) come from the environment.
// Prints one JSON object: the tool names listed through the bridge and an echo's text.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { fileURLToPath } from "node:url";

const [url] = process.argv.slice(2);
const proxy = fileURLToPath(new URL("./node_modules/mcp-remote/dist/proxy.js", import.meta.url));
const transport = new StdioClientTransport({
  command: process.execPath,
  args: [proxy, url, "--transport", "http-only"],
  env: {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    MCP_REMOTE_CONFIG_DIR: process.env.MCP_REMOTE_CONFIG_DIR,
    BROWSER: process.env.BROWSER,
  },
  stderr: "inherit",
});
const client = new Client({ name: "stdio-only-client", version: "1.0.0" });
await client.connect(transport, { timeout: 120_000 });
const { tools } = await client.listTools({}, { timeout: 60_000 });
const echo = await client.callTool({ name: "echo", arguments: { message: "through mcp-remote" } });
console.log(JSON.stringify({ tools: tools.map((t) => t.name), echo: echo.content?.[0]?.text }));
await client.close();
