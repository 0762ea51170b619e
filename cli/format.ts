import type { TaskEvent } from "../src/shared/events.ts";

/** Step icons, in the seed's style: 📦 Architect, 🔨 Developer… */
const STEP_ICON: Record<string, string> = {
  architect: "📦",
  preparer: "🧰",
  developer: "🔨",
  tester: "🧪",
  envanalyzer: "🔎",
  secretresolver: "🔐",
  deployer: "🚀",
  caddy: "🌐",
  healthcheck: "🩺",
  rollback: "↩️",
};

function stepIcon(step: string | undefined): string {
  return STEP_ICON[(step ?? "").toLowerCase().replace(/[^a-z]/g, "")] ?? "▶️";
}

/** One human line per event, e.g. `🔨 Developer: implementing feature X...`. */
export function formatEvent(event: TaskEvent): string {
  const step = event.step ? `${event.step}: ` : "";
  switch (event.type) {
    case "task.started":
      return `⏳ ${event.message}`;
    case "step.started":
      return `${stepIcon(event.step)} ${step}${event.message}`;
    case "step.progress":
      return `   ${step}${event.message}`;
    case "step.completed":
      return `✔️  ${step}${event.message}`;
    case "log":
      return `   ${step}${event.message}`;
    case "task.needs_input":
      return `❓ ${event.message}`;
    case "task.completed":
      return `✅ ${event.message}`;
    case "task.failed":
      return `❌ ${event.message}`;
    case "task.cancelled":
      return `⏹️  ${event.message}`;
  }
}
