/**
 * The Product Owner agent that follows a task (one per task, the chat that started it): kept in the
 * task's TaskStream storage (its `meta` table), and told of each question (`task.needs_input`) and of
 * the end.
 */
import { getAgentByName } from "agents";
import { createLogger } from "../lib/log.ts";
import { isTerminal, type TaskEvent } from "../shared/events.ts";

export class TaskWatcher {
  private readonly sql: SqlStorage;
  private readonly env: Env;
  private readonly waitUntil: (promise: Promise<unknown>) => void;

  constructor(sql: SqlStorage, env: Env, waitUntil: (promise: Promise<unknown>) => void) {
    this.sql = sql;
    this.env = env;
    this.waitUntil = waitUntil;
  }

  /** Makes `agent` the task's watcher. */
  set(agent: string): void {
    this.sql.exec(`INSERT OR REPLACE INTO meta (key, value) VALUES ('watcher', ?)`, agent);
  }

  /** The seq of the last event a watcher is told of (a question or the end), if any. */
  lastNoticeSeq(): number | undefined {
    return this.sql.exec<{ seq: number }>(`SELECT seq FROM events WHERE type IN ('task.needs_input', 'task.completed', 'task.failed', 'task.cancelled') ORDER BY seq DESC LIMIT 1`).toArray()[0]?.seq;
  }

  /** Tells the watching agent; a notice that cannot be delivered is recovered by the agent itself on its next turn. */
  notify(events: TaskEvent[]): void {
    const relevant = events.filter((event) => event.type === "task.needs_input" || isTerminal(event.type));
    if (relevant.length === 0) return;
    const watcher = this.sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = 'watcher'`).toArray()[0]?.value;
    if (!watcher) return;
    const deliver = async () => {
      for (const event of relevant) {
        for (let attempt = 1; ; attempt++) {
          try {
            await (await getAgentByName(this.env.PRODUCT_OWNER, watcher)).onTaskEvent(event);
            break;
          } catch (error) {
            if (attempt >= 3) {
              createLogger(this.env.LOG_LEVEL, { component: "task-stream" }).warn("could not tell the product owner", { taskId: event.taskId, agent: watcher, type: event.type, error: error instanceof Error ? error.message : String(error) });
              break;
            }
            await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
          }
        }
      }
    };
    this.waitUntil(deliver());
  }
}
