/**
 * The scripted model's Product Owner side, for `npm run dev`, the demo and the tests that do not
 * script every word: the intent parser, the summariser and the Product Owner itself, each answered
 * by rules a model would follow on a simple conversation. Every answer is a side turn.
 *
 * - The intent parser picks groups by keywords (build → engineering, deploy → deploy…).
 * - The Product Owner, asked for a new product ("Weather bot with notifications"), creates a
 *   project named after it, then starts its engineering (the person confirms); asked for something
 *   the factory cannot build (a mobile or desktop app), it declines with what its prompt says the
 *   factory can build, and creates nothing; asked to deploy,
 *   roll back or take a project offline, it calls that tool; "change <project>: <what>" asks for a
 *   change, "ship|discard change <n> of <project>" answers one, "more on change <n> of <project>: <what>"
 *   changes it more, "undo the last change of <project>" (or
 *   "undo <project> to checkpoint <n>") undoes; "why is <project> down?" (or "logs of <project>") quotes
 *   its last log lines; anything else gets a short answer.
 * - The summariser merges the turns it is given into a line per message.
 *
 * Everything it says to the person starts with SCRIPTED_LABEL: nobody should mistake it for a model.
 */
import { type ChatRequest, messageText, type Reply, type Turn } from "./model-server.ts";

/** The label on every text the scripted model writes for a person to read. */
export const SCRIPTED_LABEL = "[scripted model]";
const labelled = (text: string) => `${SCRIPTED_LABEL} ${text}`;

const ACTION_WORDS = /\b(deploy|roll ?back|offline|undeploy)\b/i;

export function intentOf(text: string): { groups: string[]; intent: string } {
  const groups = new Set<string>();
  if (/\b(deploy|release|live|roll ?back|offline|undeploy|url)\b/i.test(text)) groups.add("deploy");
  if (/\b(fail|error|broken|wrong|why|down|logs?)\b/i.test(text)) groups.add("diagnose");
  if (/\b(spend|cost|budget|usage)\b/i.test(text)) groups.add("admin");
  if (/\b(server|runner|vps)\b/i.test(text)) groups.add("infrastructure");
  if (groups.size === 0 || /\b(build|bot|app|service|site|make|create|new|want|project)\b/i.test(text)) {
    groups.add("project_management");
    groups.add("engineering");
  }
  return { groups: [...groups], intent: text.slice(0, 60) };
}

/** A project name from a description: "Weather bot with notifications" → weather-bot-notifications. */
export function slugOf(text: string): string {
  // Paths ("at /hello") are routes, not names.
  const words = text.toLowerCase().replace(/(^|\s)\/\S*/g, " ").replace(/[^a-z0-9 ]+/g, " ").split(/\s+/).filter((w) => w && !["a", "an", "the", "with", "and", "for", "i", "want", "please", "build", "me", "make", "that", "which", "says", "say", "at", "to", "of", "on"].includes(w));
  const slug = words.slice(0, 4).join("-").slice(0, 36).replace(/-+$/, "");
  return /^[a-z]/.test(slug) && slug.length >= 3 ? slug : `app-${slug || "new"}`.slice(0, 36);
}

const lastUser = (request: ChatRequest) => messageText([...request.messages].reverse().find((message) => message.role === "user"));

function toolCall(name: string, args: Record<string, unknown>): Reply {
  return { toolCalls: [{ name, arguments: name === "respond" && typeof args.text === "string" ? { ...args, text: labelled(args.text) } : args }] };
}

/** The kinds the system prompt says the factory builds ("What the factory can build:" and its "- " lines). */
function buildableFrom(request: ChatRequest): string {
  const lines = messageText(request.messages.find((message) => message.role === "system")).split("\n");
  const start = lines.indexOf("What the factory can build:");
  if (start < 0) return "(the prompt does not say)";
  const listed = lines.slice(start + 1);
  const end = listed.findIndex((line) => !line.startsWith("- "));
  return listed.slice(0, end < 0 ? undefined : end).join("\n");
}

/** Asked for something live ("build me…", "…and deploy it"), the build is confirmed with its deploy. */
const wantsItLive = (request: ChatRequest) => /\b(build me|deploy|live|online|host)\b/i.test(lastUser(request));

/** The Product Owner's next move, from the conversation it is shown. */
export function productOwnerReply(request: ChatRequest): Reply {
  const last = request.messages.at(-1);
  const offered = new Set((request.tools ?? []).map((tool) => tool.function.name));
  if (last?.role === "tool") {
    const previous = [...request.messages].reverse().find((message) => message.role === "assistant" && message.tool_calls?.length);
    const call = previous?.tool_calls?.find((c) => c.id === last.tool_call_id) ?? previous?.tool_calls?.[0];
    const result = messageText(last);
    if (call?.function.name === "create_project" && !result.startsWith("error")) {
      const name = (JSON.parse(call.function.arguments) as { name: string }).name;
      if (offered.has("start_engineering")) return toolCall("start_engineering", { project: name, ...(wantsItLive(request) ? { deploy: true } : {}) });
      return toolCall("respond", { text: `Project ${name} is created. Say "build ${name}" when you want it built.` });
    }
    if (call?.function.name === "create_project" && /already exists/.test(result)) {
      const args = JSON.parse(call.function.arguments) as { name: string; description: string };
      return toolCall("create_project", { name: `${args.name.slice(0, 33)}-${Math.floor(Math.random() * 90 + 10)}`, description: args.description });
    }
    if (result.startsWith("error")) return toolCall("respond", { text: `That did not work: ${result.replace(/^error:\s*/, "")}` });
    if (call?.function.name === "app_logs") {
      // The evidence: the last lines, quoted as they came (masked on the server).
      const logs = JSON.parse(result) as { project: string; state: string; lines: string[] };
      return toolCall("respond", { text: `${logs.project}'s release is ${logs.state}. What it logged last:\n${logs.lines.slice(-5).join("\n")}` });
    }
    if (/asked to confirm/.test(result)) return { toolCalls: [{ name: "finish", arguments: {} }] };
    return toolCall("respond", { text: "Done." });
  }
  const text = lastUser(request).trim();
  // "change <project>: <what>" asks for a change; "ship|discard change <n> of <project>" answers one.
  const change = /^change\s+([a-z][a-z0-9-]{2,39}):\s*(.{3,})$/i.exec(text);
  if (change?.[1] && change[2] && offered.has("request_change")) return toolCall("request_change", { project: change[1], request: change[2] });
  const answer = /^(ship|discard)\s+change\s+#?(\d+)\s+of\s+([a-z][a-z0-9-]{2,39})$/i.exec(text);
  const answerTool = `${answer?.[1]?.toLowerCase() ?? ""}_change`;
  if (answer?.[3] && offered.has(answerTool)) return toolCall(answerTool, { project: answer[3], number: Number(answer[2]) });
  // "more on change <n> of <project>: <what>" changes an open change more.
  const more = /^more on change\s+#?(\d+)\s+of\s+([a-z][a-z0-9-]{2,39}):\s*(.{3,})$/i.exec(text);
  if (more?.[1] && more[2] && more[3] && offered.has("change_more")) return toolCall("change_more", { project: more[2], number: Number(more[1]), request: more[3] });
  // "why is <project> down?" (or "… not answering", "logs of <project>"): its logs, quoted.
  const why = /^(?:why is\s+([a-z][a-z0-9-]{2,39})\s+(?:down|not answering|broken)|(?:show me the )?logs of\s+([a-z][a-z0-9-]{2,39}))\b/i.exec(text);
  const ofProject = why?.[1] ?? why?.[2];
  if (ofProject && offered.has("app_logs")) return toolCall("app_logs", { project: ofProject, tail: 20 });
  const undo = /^undo\s+(?:the last change of\s+)?([a-z][a-z0-9-]{2,39})(?:\s+to checkpoint\s+#?(\d+))?$/i.exec(text);
  if (undo?.[1] && offered.has("undo")) return toolCall("undo", { project: undo[1], ...(undo[2] ? { checkpoint: Number(undo[2]) } : {}) });
  const named = /\b(?:deploy|roll ?back|undeploy|offline)\s+([a-z][a-z0-9-]{2,39})\b/i.exec(text)?.[1];
  if (ACTION_WORDS.test(text) && named) {
    if (/roll ?back/i.test(text) && offered.has("rollback_project")) return toolCall("rollback_project", { project: named });
    if (/(undeploy|offline)/i.test(text) && offered.has("undeploy_project")) return toolCall("undeploy_project", { project: named, ...(/\bdelete (its|the) data\b/i.test(text) ? { deleteData: true } : {}) });
    if (offered.has("deploy_project")) return toolCall("deploy_project", { project: named });
  }
  const build = /^build\s+([a-z][a-z0-9-]{2,39})$/i.exec(text)?.[1];
  if (build && offered.has("start_engineering")) return toolCall("start_engineering", { project: build });
  if (/^(hi|hello|hey)\b/i.test(text) || text.length < 12) return toolCall("respond", { text: "Hello! Describe the product you want (for example “Weather bot with notifications”) and I will build and deploy it." });
  const unbuildable = /\b(mobile|iphone|ios|android|desktop|windows|macos)\s+(app|application|program|game)\b|\bbrowser extension\b/i.exec(text)?.[0];
  if (unbuildable) return toolCall("respond", { text: `I can't build "${unbuildable}" here. What I can build:\n${buildableFrom(request)}` });
  if (offered.has("create_project")) return toolCall("create_project", { name: slugOf(text), description: text });
  return toolCall("respond", { text: "I can build products and deploy them: describe what you want." });
}

export function productOwnerSide(): Turn[] {
  return [
    { name: "intent parser", match: { tools: false, anyMessage: "You are the Intent Parser" }, reply: (request) => ({ content: JSON.stringify(intentOf(lastUser(request).replace(/^[\s\S]*Message: /, ""))) }) },
    {
      name: "summariser",
      match: { tools: false, anyMessage: "You are the Summariser" },
      reply: (request) => ({ content: lastUser(request).split("New turns:\n")[1]?.split("\n").filter((line) => line.startsWith("user:")).slice(-10).join("\n").slice(0, 1500) ?? "" }),
    },
    { name: "product owner", match: { tools: ["respond", "finish"], anyMessage: "You are the Product Owner" }, reply: productOwnerReply },
  ];
}
