/**
 * The scripted model `npm run dev` (and the demo) answer with: any number of engineering runs, each
 * ending with passing tests. Every answer is a side turn, so the script is never used up:
 *
 * - the Architect gets a spec made from the project's name and description;
 * - the coding agent reads TASK.md and app/main.py, edits main.py to add a GET /about route that
 *   tells what the service is for (the spec's summary), adds a test for that route, and says so;
 * - the EnvAnalyzer gets each variable of the .env.example it is shown classified by its name (a
 *   password or secret is generated, a port, domain or URL computed, any other key asked of the owner);
 * - anything else without tools (a title request) gets a short title.
 */
import type { ChatRequest, Scenario } from "./model-server.ts";
import { messageText } from "./model-server.ts";
import { productOwnerSide } from "./po-scenario.ts";

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

/**
 * The agent's edits to the template's app/main.py (runner/templates/python-http), as a model makes
 * them: exact snippets of the file it read, replaced with the same plus the /about route.
 */
const ABOUT_EDITS = (summary: string) => [
  {
    oldString: "from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n",
    newString: `from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n\nABOUT = ${JSON.stringify(summary)}\n`,
  },
  {
    oldString: 'def health(_handler):\n    return 200, {"ok": True}\n',
    newString: 'def health(_handler):\n    return 200, {"ok": True}\n\n\ndef about(_handler):\n    return 200, {"about": ABOUT}\n',
  },
  { oldString: '    ("GET", "/healthz"): health,\n', newString: '    ("GET", "/healthz"): health,\n    ("GET", "/about"): about,\n' },
];

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
      // First: the Product Owner's requests (no tools for the intent parser and the summariser) are its own.
      ...productOwnerSide(),
      { name: "architect", match: { tools: false, anyMessage: "You are the Architect" }, reply: (request) => ({ content: JSON.stringify(spec(request)) }) },
      { name: "env-analyzer", match: { tools: false, anyMessage: "You are the EnvAnalyzer" }, reply: (request) => ({ content: JSON.stringify(classifyByName(request)) }) },
      { name: "title", match: { tools: false }, reply: { content: "Build the service" } },
      { name: "agent: done", match: { tools: true, lastRole: "tool", lastMessage: /Wrote file successfully/i }, reply: { content: "Added GET /about with its test." } },
      {
        name: "agent: edit and write",
        match: { tools: ["edit", "write"], lastRole: "tool" },
        reply: (request) => ({
          toolCalls: [
            ...ABOUT_EDITS(summaryFrom(request)).map((edit) => ({ name: "edit", arguments: { filePath: "/work/repo/app/main.py", ...edit } })),
            // Last, so that its answer ("Wrote file successfully") is the one the done turn sees.
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
