/**
 * The scripted model `npm run dev` (and the demo) answer with: any number of engineering runs, each
 * ending with passing tests. Every answer is a side turn, so the script is never used up:
 *
 * - the Architect gets a spec made from the project's name and description;
 * - the coding agent reads TASK.md and app/main.py, writes main.py back with a GET /about route that
 *   tells what the service is for (the spec's summary), adds a test for that route, and says so;
 * - the EnvAnalyzer gets each variable of the .env.example it is shown classified by its name (a
 *   password or secret is generated, a port, domain or URL computed, any other key asked of the owner);
 * - anything else without tools (a title request) gets a short title.
 */
import type { ChatRequest, Scenario } from "./model-server.ts";
import { messageText } from "./model-server.ts";

function projectOf(request: ChatRequest): { name: string; description: string } {
  const text = messageText(request.messages.find((message) => message.role === "user"));
  const name = /Project name: (.+)/.exec(text)?.[1]?.trim() ?? "service";
  const description = text.split("Description:\n")[1]?.trim() ?? "";
  return { name, description };
}

function spec(request: ChatRequest) {
  const { name, description } = projectOf(request);
  const summary = (description || `The ${name} service`).split("\n")[0]?.slice(0, 300) ?? name;
  return {
    summary,
    template: "python-http",
    modules: [{ name: "about", purpose: `tells what ${name} is for` }],
    routes: [{ method: "GET", path: "/about", purpose: "the service's name and purpose" }],
    env: [],
  };
}

const MAIN_PY = (summary: string) => `"""A small HTTP service on the standard library. Add a route by adding a function to ROUTES."""
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ABOUT = ${JSON.stringify(summary)}


def health(_handler):
    return 200, {"ok": True}


def about(_handler):
    return 200, {"about": ABOUT}


ROUTES = {
    ("GET", "/healthz"): health,
    ("GET", "/about"): about,
}


class Handler(BaseHTTPRequestHandler):
    def _dispatch(self, method):
        route = ROUTES.get((method, self.path.split("?", 1)[0]))
        status, body = route(self) if route else (404, {"error": "not found"})
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def log_message(self, format, *args):
        print(f"{self.address_string()} {format % args}", flush=True)


def serve(port=None):
    return ThreadingHTTPServer(("0.0.0.0", int(port or os.environ.get("PORT", "8000"))), Handler)


if __name__ == "__main__":
    server = serve()
    print(f"listening on port {server.server_address[1]}", flush=True)
    server.serve_forever()
`;

const ABOUT_TEST = `def test_about(get):
    status, body = get("/about")
    assert status == 200
    assert body["about"]
`;

/** The spec's summary, from TASK.md as the agent read it (its tools' output may number the lines). */
function summaryFrom(request: ChatRequest): string {
  const lines = request.messages
    .filter((message) => message.role === "tool")
    .map(messageText)
    .join("\n")
    .split("\n")
    .map((line) => line.replace(/^\s*\d+\s*[:|]\s?/, "").trim());
  const heading = lines.findIndex((line) => line === "# The spec");
  return (heading >= 0 ? lines.slice(heading + 1).find((line) => line !== "") : undefined) ?? "A service built by Orchestrator.";
}

/** The EnvAnalyzer's answer, by the variables' names (as a model would reason about them). */
export function classifyByName(request: ChatRequest): { variables: { name: string; kind: "infra" | "computed" | "user"; reason: string }[] } {
  const text = messageText(request.messages.find((message) => message.role === "user"));
  const names = [...text.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)=/gm)].map((match) => match[1] ?? "");
  return {
    variables: names.map((name) => {
      if (/(^|_)(PORT|HOST|DOMAIN|URL|HOSTNAME|ENV|ENVIRONMENT)$/.test(name)) return { name, kind: "computed", reason: "comes from the deployment" };
      if (/(SECRET|PASSWORD|SALT|SIGNING)/.test(name)) return { name, kind: "infra", reason: "a secret the platform can generate" };
      return { name, kind: "user", reason: "a credential only the owner has" };
    }),
  };
}

export function demoScenario(): Scenario {
  return {
    turns: [],
    side: [
      { name: "architect", match: { tools: false, anyMessage: "You are the Architect" }, reply: (request) => ({ content: JSON.stringify(spec(request)) }) },
      { name: "env-analyzer", match: { tools: false, anyMessage: "You are the EnvAnalyzer" }, reply: (request) => ({ content: JSON.stringify(classifyByName(request)) }) },
      { name: "title", match: { tools: false }, reply: { content: "Build the service" } },
      { name: "agent: done", match: { tools: true, lastRole: "tool", lastMessage: /Wrote file successfully/i }, reply: { content: "Added GET /about with its test." } },
      {
        name: "agent: write",
        match: { tools: ["write"], lastRole: "tool" },
        reply: (request) => ({
          toolCalls: [
            { name: "write", arguments: { filePath: "/work/repo/app/main.py", content: MAIN_PY(summaryFrom(request)) } },
            { name: "write", arguments: { filePath: "/work/repo/tests/test_about.py", content: ABOUT_TEST } },
          ],
        }),
      },
      {
        name: "agent: read",
        match: { tools: ["read"], lastRole: "user" },
        reply: { toolCalls: [{ name: "read", arguments: { filePath: "/work/repo/TASK.md" } }, { name: "read", arguments: { filePath: "/work/repo/app/main.py" } }] },
      },
    ],
  };
}
