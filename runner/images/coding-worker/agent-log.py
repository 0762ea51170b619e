"""Turns a coding agent's JSON event lines into one readable line each, for the task's log.
Knows opencode's events (AGENT_LOG_FORMAT=opencode); other agents' lines pass through as they are."""
import json
import os
import sys

FORMAT = os.environ.get("AGENT_LOG_FORMAT", "opencode")

def describe(event):
    part = event.get("part") or {}
    kind = event.get("type")
    if kind == "tool_use":
        state = part.get("state") or {}
        target = (state.get("input") or {}).get("filePath") or (state.get("input") or {}).get("command") or ""
        return f"tool {part.get('tool')} {target}: {state.get('status')}".rstrip()
    if kind == "text":
        return f"agent: {part.get('text', '').strip()}"
    if kind == "step_finish":
        tokens = part.get("tokens") or {}
        return f"step done ({part.get('reason')}, {tokens.get('input', 0)} in / {tokens.get('output', 0)} out tokens)"
    if kind == "error":
        error = event.get("error") or {}
        data = error.get("data") if isinstance(error, dict) else None
        message = data.get("message") if isinstance(data, dict) else None
        name = error.get("name", "error") if isinstance(error, dict) else "error"
        return f"agent error: {name}: {message or json.dumps(error)[:1000]}"
    return None

for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        continue
    try:
        event = json.loads(line)
    except ValueError:
        print(line, flush=True)
        continue
    if FORMAT != "opencode":
        print(line, flush=True)
        continue
    text = describe(event) if isinstance(event, dict) else None
    if text:
        print(text, flush=True)
