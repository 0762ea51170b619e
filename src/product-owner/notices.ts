/**
 * What the Product Owner tells the person about their tasks: started (with the live view's link),
 * and how each one ended, with what to do next.
 */
import { z } from "zod";
import { DeployAfterBuild, DeployNotification } from "../shared/deploys.ts";
import type { TaskEvent } from "../shared/events.ts";
import { PROJECT_TEMPLATES, TemplateName } from "../shared/templates.ts";
import type { Work } from "./conversation-store.ts";

const WHAT: Record<string, string> = { engineering: "Building", deploy: "Deploying" };

export function startedText(work: Work, taskId: string, link: string | null): string {
  const what = WHAT[work.type] ?? "Working on";
  const watch = link ? `Watch it live: ${link}` : `Follow it with: orchestrator ${work.type === "deploy" ? "deploy" : "engineering"} status ${taskId} --follow`;
  return `${what} ${work.project} has started (task ${taskId}). ${watch}\nI will tell you here when it is done.`;
}

/** How a task ended, as the person is told; the event is its terminal one. */
export function outcomeText(work: Work, event: Pick<TaskEvent, "type" | "message" | "data" | "step">): string {
  const data = (event.data ?? {});
  if (work.type === "deploy") {
    const notification = DeployNotification.safeParse(data.notification);
    if (event.type === "task.completed") return `🚀 ${notification.success ? notification.data.message : `${work.project}: ${event.message}`}`;
    if (event.type === "task.cancelled") return `⏹ The deploy of ${work.project} was cancelled: ${event.message}`;
    return `❌ The deploy of ${work.project} failed: ${event.message}\nThe release that was live (if any) still is. Ask me “what failed?” for details, or to deploy again once it is fixed.`;
  }
  if (event.type === "task.completed") {
    const repository = typeof data.repository === "string" ? `\nRepository: ${data.repository}` : "";
    // The kind the Architect chose (src/shared/templates.ts), so the person knows what was built.
    const kind = TemplateName.safeParse(data.kind);
    const built = kind.success ? `\nBuilt as: ${kind.data} (${PROJECT_TEMPLATES[kind.data].description})` : "";
    const deploy = DeployAfterBuild.safeParse(data.deploy);
    // A change request ends with a pull request, which the person ships or discards.
    const change = z.object({ number: z.number() }).safeParse(data.change).data;
    const next = change
      ? `Say “ship change ${change.number} of ${work.project}” to merge it and put it live, “more on change ${change.number} of ${work.project}: …” to change it more, or “discard change ${change.number} of ${work.project}”.`
      : !deploy.success
        ? `Say “deploy ${work.project}” to put it live.`
        : "taskId" in deploy.data
          ? "Deploying it now, as you asked."
          : `You asked me to deploy it, but I could not: ${deploy.data.notDeployed}.`;
    return `✅ ${event.message}${repository}${built}\n${next}`;
  }
  if (event.type === "task.cancelled") return `⏹ Building ${work.project} was cancelled: ${event.message}`;
  return `❌ Building ${work.project} failed${event.step ? ` at ${event.step}` : ""}: ${event.message}\nAsk me “what failed?” for details, or to start it again.`;
}
