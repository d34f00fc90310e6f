"""A minimal STDIO MCP server using only the standard library: one tool, `echo`.

Used to run a real interpreter the way a newcomer would (`wrap -- python3 stdio_echo.py`),
whatever installed it (a version manager's shim included).
"""
import json
import sys

for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method = msg.get("method")
    if "id" not in msg:
        continue
    if method == "initialize":
        result = {
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "stdio-echo", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        args = msg["params"].get("arguments", {})
        text = "%s from %s" % (args.get("message", ""), sys.executable)
        result = {"content": [{"type": "text", "text": text}]}
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
