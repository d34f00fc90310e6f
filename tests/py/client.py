"""Drives a server through mcp-warden with the official Python MCP client SDK, unchanged.

Uses the SDK's high-level `Client` in its default "auto" mode, which first probes with the
2026-07-28 `server/discover` request and falls back to `initialize` for servers of the
session era, as mcp-warden presents itself.

Usage: python client.py <url> <streamable|sse> <everything|time> [--token T]
Prints one JSON object with what it observed; the Rust test asserts on it.
"""

import asyncio
import json
import sys

import mcp.types as types
from mcp.client import Client


async def run(url: str, kind: str, scenario: str, token: str | None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    seen = {"sampling": 0}

    async def sampling(context, params):
        seen["sampling"] += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled-by-py-client"),
            model="test-model",
            stopReason="endTurn",
        )

    if kind == "sse":
        from mcp.client.sse import sse_client

        transport = sse_client(url, headers=headers)
    else:
        from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

        transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))

    out: dict = {}
    async with Client(transport, sampling_callback=sampling, read_timeout_seconds=30) as client:
        out["server"] = client.server_info.name
        out["protocolVersion"] = client.protocol_version
        tools = await client.list_tools()
        out["tools"] = sorted(t.name for t in tools.tools)
        if scenario == "time":
            r = await client.call_tool("get_current_time", {"timezone": "UTC"})
            out["time"] = json.loads(r.content[0].text)
            r = await client.call_tool(
                "convert_time",
                {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
            )
            out["convert"] = json.loads(r.content[0].text)
        elif scenario == "everything":
            r = await client.call_tool("echo", {"message": "hello from python"})
            out["echo"] = r.content[0].text
            r = await client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
            out["sampling"] = r.content[0].text
            prompts = await client.list_prompts()
            out["prompts"] = sorted(p.name for p in prompts.prompts)
    out["seen"] = seen
    return out


def main() -> None:
    url, kind, scenario = sys.argv[1:4]
    token = None
    if "--token" in sys.argv:
        token = sys.argv[sys.argv.index("--token") + 1]
    print(json.dumps(asyncio.run(run(url, kind, scenario, token))))


if __name__ == "__main__":
    main()
