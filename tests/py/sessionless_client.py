"""Drives a server through mcp-warden with the official Python MCP client SDK in its
2026-07-28 (sessionless) era: `mode="2026-07-28"` (a modern-only client) or `mode="auto"`
(which probes with `server/discover` and adopts the era when the server speaks it).

Usage: python sessionless_client.py <url> <2026-07-28|auto> <everything|time|mrtr|listen|concurrent>
       [--token T] [--count N]
Prints one JSON object with what it observed; the Rust test asserts on it.
"""

import argparse
import json
import time

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def run(args) -> dict:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30, read=60),
        # The default pool holds 100 connections: a wider burst would queue in the client.
        limits=httpx2.Limits(max_connections=args.count + 10),
    )
    out: dict = {}
    asked = {"sampling": 0, "elicitation": 0, "roots": 0}

    async def sampling(context, params):
        asked["sampling"] += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled-by-py-client"),
            model="test-model",
            stop_reason="endTurn",
        )

    async def elicitation(context, params):
        asked["elicitation"] += 1
        return types.ElicitResult(action="accept", content={"name": "octocat"})

    async def roots(context):
        asked["roots"] += 1
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/project", name="project")])

    callbacks = (
        dict(sampling_callback=sampling, elicitation_callback=elicitation, list_roots_callback=roots)
        if args.scenario == "mrtr"
        else {}
    )
    async with http:
        transport = streamable_http_client(args.url, http_client=http)
        async with Client(
            transport,
            mode=args.mode,
            cache=None,
            client_info=types.Implementation(name="warden-sessionless-test", version="1"),
            **callbacks,
        ) as client:
            out["protocolVersion"] = client.protocol_version
            if args.scenario == "mrtr":
                # A client that can be asked things is sent to the session era by discover
                # (a dual-era client would fall back); a modern-only one never calls it.
                try:
                    await client.session.send_discover("2026-07-28")
                    out["discoverFallback"] = False
                except Exception:  # noqa: BLE001 - the fallback answer is an MCPError
                    out["discoverFallback"] = True
            raw = await client.session.send_discover("2026-07-28") if args.scenario != "mrtr" else {"supportedVersions": ["2026-07-28"], "capabilities": {}, "ttlMs": 0, "cacheScope": "private", "resultType": "complete"}
            discovered = types.DiscoverResult.model_validate(raw)
            out["discover"] = {
                "supportedVersions": discovered.supported_versions,
                "capabilities": sorted(
                    k for k, v in discovered.capabilities.model_dump().items() if v is not None
                ),
                "serverInfo": (raw.get("_meta") or {})
                .get("io.modelcontextprotocol/serverInfo", {})
                .get("name"),
            }
            tools = await client.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            if args.scenario == "time":
                r = await client.call_tool("get_current_time", {"timezone": "UTC"})
                out["time"] = json.loads(r.content[0].text)
            elif args.scenario == "everything":
                r = await client.call_tool("echo", {"message": "hello sessionless"})
                out["echo"] = r.content[0].text
                steps = []

                async def progress(p, total, message):
                    steps.append(p)

                r = await client.call_tool(
                    "trigger-long-running-operation",
                    {"duration": 1, "steps": 3},
                    progress_callback=progress,
                )
                out["progress"] = steps
                out["longRunning"] = r.content[0].text
                prompts = await client.list_prompts()
                out["prompts"] = sorted(p.name for p in prompts.prompts)
                p = await client.get_prompt("simple-prompt")
                out["prompt"] = p.messages[0].content.text
                resources = await client.list_resources()
                first = resources.resources[0]
                out["resource"] = str(first.uri)
                read = await client.read_resource(first.uri)
                out["read"] = str(read.contents[0].uri)
                templates = await client.list_resource_templates()
                out["templates"] = len(templates.resource_templates)
                # Cancellation is the client closing its response: the call is abandoned
                # after half a second, and the server is told to stop.
                started = time.monotonic()
                try:
                    await client.call_tool(
                        "trigger-long-running-operation",
                        {"duration": 30, "steps": 30},
                        read_timeout_seconds=0.5,
                    )
                    out["cancelled"] = False
                except Exception as e:  # noqa: BLE001 - the SDK raises MCPError on timeout
                    out["cancelled"] = type(e).__name__
                out["cancelledAfter"] = time.monotonic() - started
                # The server still answers afterwards.
                r = await client.call_tool("echo", {"message": "after cancel"})
                out["afterCancel"] = r.content[0].text
            elif args.scenario == "mrtr":
                # The server asks during the call; the SDK answers each round trip.
                r = await client.call_tool(
                    "trigger-sampling-request", {"prompt": "hi", "maxTokens": 5}
                )
                out["sampling"] = " ".join(c.text for c in r.content if c.type == "text")
                r = await client.call_tool("trigger-elicitation-request", {})
                out["elicitation"] = " ".join(c.text for c in r.content if c.type == "text")
                r = await client.call_tool("get-roots-list", {})
                out["roots"] = " ".join(c.text for c in r.content if c.type == "text")
                out["asked"] = asked
            elif args.scenario == "listen":
                uri = "demo://resource/static/document/architecture.md"
                async with client.listen(
                    tools_list_changed=True, resource_subscriptions=[uri]
                ) as sub:
                    out["honored"] = sorted(
                        k for k, v in sub.honored.model_dump().items() if v
                    )
                    out["subscriptionId"] = str(sub.subscription_id)
                    r = await client.call_tool("toggle-subscriber-updates", {})
                    out["toggled"] = r.content[0].text
                    with anyio.fail_after(30):
                        async for event in sub:
                            out["event"] = type(event).__name__
                            out["eventUri"] = str(getattr(event, "uri", ""))
                            break
            elif args.scenario == "concurrent":
                results: list = [None] * args.count

                async def one(i: int):
                    r = await client.call_tool("echo", {"message": f"call-{i}"})
                    results[i] = r.content[0].text

                async with anyio.create_task_group() as tg:
                    for i in range(args.count):
                        tg.start_soon(one, i)
                out["answered"] = sum(
                    1 for i, r in enumerate(results) if r is not None and r.endswith(f"call-{i}")
                )
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mode")
    parser.add_argument("scenario")
    parser.add_argument("--token")
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(anyio.run(run, args)))


if __name__ == "__main__":
    main()
