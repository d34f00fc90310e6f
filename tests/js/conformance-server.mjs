// A STDIO MCP server with everything the official conformance suite
// (@modelcontextprotocol/conformance 0.1.16, server scenarios) asks of the server it tests.
// The suite only speaks HTTP and ships no STDIO server, so this one is run behind mcp-warden:
// a pass then shows the bridge carries each feature unchanged.
// Built on the official TypeScript SDK (McpServer over StdioServerTransport).
// Usage: node conformance-server.mjs
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { completable } from "@modelcontextprotocol/sdk/server/completable.js";
import {
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

// A 1x1 red PNG and 16 samples of 8-bit mono silence as WAV: the smallest valid payloads.
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
const WAV = "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YRAAAACAgICAgICAgICAgICAgICA";

// The scenarios expect about 50 ms between notifications, so a client sees them arrive while
// the call is still running rather than in one burst with the result.
const STEP_MS = 50;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (t) => ({ type: "text", text: t });

const server = new McpServer(
  { name: "mcp-warden-conformance-server", version: "1.0.0" },
  { capabilities: { logging: {}, resources: { subscribe: true } } },
);

// --- tools ---------------------------------------------------------------------------------

server.registerTool(
  "test_simple_text",
  { description: "Returns a fixed text" },
  async () => ({ content: [text("This is a simple text response for testing.")] }),
);

server.registerTool(
  "test_image_content",
  { description: "Returns a PNG image" },
  async () => ({ content: [{ type: "image", data: PNG, mimeType: "image/png" }] }),
);

server.registerTool(
  "test_audio_content",
  { description: "Returns a WAV clip" },
  async () => ({ content: [{ type: "audio", data: WAV, mimeType: "audio/wav" }] }),
);

server.registerTool(
  "test_embedded_resource",
  { description: "Returns an embedded text resource" },
  async () => ({
    content: [
      {
        type: "resource",
        resource: {
          uri: "test://embedded-resource",
          mimeType: "text/plain",
          text: "This is an embedded resource content.",
        },
      },
    ],
  }),
);

server.registerTool(
  "test_multiple_content_types",
  { description: "Returns text, an image and an embedded resource" },
  async () => ({
    content: [
      text("Multiple content types test:"),
      { type: "image", data: PNG, mimeType: "image/png" },
      {
        type: "resource",
        resource: {
          uri: "test://mixed-content-resource",
          mimeType: "application/json",
          text: JSON.stringify({ test: "data", value: 123 }),
        },
      },
    ],
  }),
);

server.registerTool(
  "test_tool_with_logging",
  { description: "Sends three info log messages while it runs" },
  async () => {
    // sendLoggingMessage honours the level the client set with logging/setLevel.
    const log = (data) => server.sendLoggingMessage({ level: "info", data });
    await log("Tool execution started");
    await sleep(STEP_MS);
    await log("Tool processing data");
    await sleep(STEP_MS);
    await log("Tool execution completed");
    return { content: [text("Logging test completed")] };
  },
);

server.registerTool(
  "test_error_handling",
  { description: "Always fails with a tool error" },
  async () => ({
    isError: true,
    content: [text("This tool intentionally returns an error for testing")],
  }),
);

server.registerTool(
  "test_tool_with_progress",
  { description: "Reports progress 0, 50 and 100 of 100 when given a progress token" },
  async (extra) => {
    const token = extra._meta?.progressToken;
    for (const progress of [0, 50, 100]) {
      if (token !== undefined) {
        await extra.sendNotification({
          method: "notifications/progress",
          params: { progressToken: token, progress, total: 100 },
        });
      }
      if (progress < 100) await sleep(STEP_MS);
    }
    return { content: [text("Progress test completed")] };
  },
);

server.registerTool(
  "test_sampling",
  {
    description: "Asks the client's LLM to answer a prompt (sampling/createMessage)",
    inputSchema: { prompt: z.string().describe("The prompt to send to the LLM") },
  },
  async ({ prompt }) => {
    const answer = await server.server.createMessage({
      messages: [{ role: "user", content: text(prompt) }],
      maxTokens: 100,
    });
    const said = answer.content.type === "text" ? answer.content.text : JSON.stringify(answer.content);
    return { content: [text(`LLM response: ${said}`)] };
  },
);

server.registerTool(
  "test_elicitation",
  {
    description: "Asks the user for a username and an email (elicitation/create)",
    inputSchema: { message: z.string().describe("The message to show the user") },
  },
  async ({ message }) => {
    const answer = await server.server.elicitInput({
      message,
      requestedSchema: {
        type: "object",
        properties: {
          username: { type: "string", description: "User's response" },
          email: { type: "string", description: "User's email address" },
        },
        required: ["username", "email"],
      },
    });
    return {
      content: [text(`User response: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`)],
    };
  },
);

const elicitationSummary = (answer) =>
  text(`Elicitation completed: action=${answer.action}, content=${JSON.stringify(answer.content ?? {})}`);

server.registerTool(
  "test_elicitation_sep1034_defaults",
  { description: "Elicits a form whose fields all carry default values (SEP-1034)" },
  async () => {
    const answer = await server.server.elicitInput({
      message: "Please review your profile",
      requestedSchema: {
        type: "object",
        properties: {
          name: { type: "string", description: "Name", default: "John Doe" },
          age: { type: "integer", description: "Age", default: 30 },
          score: { type: "number", description: "Score", default: 95.5 },
          status: {
            type: "string",
            description: "Status",
            enum: ["active", "inactive", "pending"],
            default: "active",
          },
          verified: { type: "boolean", description: "Verified", default: true },
        },
      },
    });
    return { content: [elicitationSummary(answer)] };
  },
);

server.registerTool(
  "test_elicitation_sep1330_enums",
  { description: "Elicits a form with every enum schema variant (SEP-1330)" },
  async () => {
    const answer = await server.server.elicitInput({
      message: "Please pick some options",
      requestedSchema: {
        type: "object",
        properties: {
          untitledSingle: { type: "string", enum: ["option1", "option2", "option3"] },
          titledSingle: {
            type: "string",
            oneOf: [
              { const: "value1", title: "First Option" },
              { const: "value2", title: "Second Option" },
              { const: "value3", title: "Third Option" },
            ],
          },
          // Deprecated form, still part of the schema the spec accepts.
          legacyEnum: {
            type: "string",
            enum: ["opt1", "opt2", "opt3"],
            enumNames: ["Option One", "Option Two", "Option Three"],
          },
          untitledMulti: {
            type: "array",
            items: { type: "string", enum: ["option1", "option2", "option3"] },
          },
          titledMulti: {
            type: "array",
            items: {
              anyOf: [
                { const: "value1", title: "First Choice" },
                { const: "value2", title: "Second Choice" },
                { const: "value3", title: "Third Choice" },
              ],
            },
          },
        },
      },
    });
    return { content: [elicitationSummary(answer)] };
  },
);

// --- resources -----------------------------------------------------------------------------

server.registerResource(
  "static-text",
  "test://static-text",
  { description: "A fixed text resource", mimeType: "text/plain" },
  async (uri) => ({
    contents: [
      { uri: uri.href, mimeType: "text/plain", text: "This is the content of the static text resource." },
    ],
  }),
);

server.registerResource(
  "static-binary",
  "test://static-binary",
  { description: "A fixed PNG resource", mimeType: "image/png" },
  async (uri) => ({ contents: [{ uri: uri.href, mimeType: "image/png", blob: PNG }] }),
);

server.registerResource(
  "watched-resource",
  "test://watched-resource",
  { description: "A resource clients can subscribe to", mimeType: "text/plain" },
  async (uri) => ({ contents: [{ uri: uri.href, mimeType: "text/plain", text: "Watched resource content." }] }),
);

server.registerResource(
  "template-data",
  new ResourceTemplate("test://template/{id}/data", { list: undefined }),
  { description: "JSON data for any id", mimeType: "application/json" },
  async (uri, { id }) => ({
    contents: [
      {
        uri: uri.href,
        mimeType: "application/json",
        text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
      },
    ],
  }),
);

// McpServer has no subscription support of its own; the low-level handlers keep the set of
// subscribed URIs (this server never changes a resource, so nothing is ever notified).
const subscriptions = new Set();
server.server.setRequestHandler(SubscribeRequestSchema, async (request) => {
  subscriptions.add(request.params.uri);
  return {};
});
server.server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
  subscriptions.delete(request.params.uri);
  return {};
});

// --- prompts -------------------------------------------------------------------------------

server.registerPrompt(
  "test_simple_prompt",
  { description: "A prompt without arguments" },
  async () => ({ messages: [{ role: "user", content: text("This is a simple prompt for testing.") }] }),
);

const SUGGESTIONS = ["paris", "park", "party"];
server.registerPrompt(
  "test_prompt_with_arguments",
  {
    description: "A prompt with two arguments",
    argsSchema: {
      // completable() also makes McpServer declare the completions capability.
      arg1: completable(z.string().describe("First test argument"), (value) =>
        SUGGESTIONS.filter((s) => s.startsWith(value ?? "")),
      ),
      arg2: z.string().describe("Second test argument"),
    },
  },
  async ({ arg1, arg2 }) => ({
    messages: [{ role: "user", content: text(`Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`) }],
  }),
);

server.registerPrompt(
  "test_prompt_with_embedded_resource",
  {
    description: "A prompt that embeds a resource",
    argsSchema: { resourceUri: z.string().describe("URI of the resource to embed") },
  },
  async ({ resourceUri }) => ({
    messages: [
      {
        role: "user",
        content: {
          type: "resource",
          resource: { uri: resourceUri, mimeType: "text/plain", text: "Embedded resource content for testing." },
        },
      },
      { role: "user", content: text("Please process the embedded resource above.") },
    ],
  }),
);

server.registerPrompt(
  "test_prompt_with_image",
  { description: "A prompt with an image" },
  async () => ({
    messages: [
      { role: "user", content: { type: "image", data: PNG, mimeType: "image/png" } },
      { role: "user", content: text("Please analyze the image above.") },
    ],
  }),
);

await server.connect(new StdioServerTransport());
