import { createParser } from "eventsource-parser";
import { isTerminal, TaskEvent } from "../src/shared/events.ts";
import { describeNetworkError, responseError } from "./api.ts";
import { CliError, type CliConfig } from "./config.ts";

export interface FollowOptions {
  /** Called once per event, in seq order, never twice for the same seq. */
  onEvent: (event: TaskEvent) => void;
  /** Called when the connection drops and the follower is about to resume. */
  onReconnect?: (lastSeq: number, reason: string) => void;
  after?: number;
  /** Give up after this long without a working connection. */
  maxOutageMs?: number;
  signal?: AbortSignal;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follows a task's events over SSE until its terminal event, resuming with Last-Event-ID after
 * any dropped connection, so every event is delivered exactly once and in order.
 * Returns the terminal event. Throws a CliError for an unknown task, a bad key, or a lasting outage.
 */
export async function followTask(config: CliConfig, taskId: string, options: FollowOptions): Promise<TaskEvent> {
  let lastSeq = options.after ?? 0;
  let everConnected = false;
  let outageStarted: number | undefined;
  let attempt = 0;
  const maxOutageMs = options.maxOutageMs ?? 60_000;

  for (;;) {
    let terminal: TaskEvent | undefined;
    let reason = "the stream ended";
    try {
      const res = await fetch(`${config.url}/api/tasks/${encodeURIComponent(taskId)}/events`, {
        headers: { authorization: `Bearer ${config.apiKey}`, accept: "text/event-stream", "last-event-id": String(lastSeq) },
        signal: options.signal,
      });
      if (res.status === 401 || res.status === 404 || res.status === 400 || res.status === 403) {
        throw await responseError(res, `task ${taskId}`);
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      everConnected = true;
      outageStarted = undefined;
      attempt = 0;

      const parser = createParser({
        onEvent(message) {
          if (!message.id || terminal) return;
          const parsed = TaskEvent.safeParse(JSON.parse(message.data));
          if (!parsed.success || parsed.data.seq <= lastSeq) return;
          lastSeq = parsed.data.seq;
          options.onEvent(parsed.data);
          if (isTerminal(parsed.data.type)) terminal = parsed.data;
        },
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        while (!terminal) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.feed(value);
        }
      } finally {
        await reader.cancel().catch(() => undefined);
      }
      if (terminal) return terminal;
    } catch (error) {
      if (error instanceof CliError) throw error;
      if (options.signal?.aborted) throw new CliError("stopped", 130);
      if (!everConnected) throw new CliError(describeNetworkError(config, error));
      reason = error instanceof Error ? error.message : String(error);
    }
    outageStarted ??= Date.now();
    if (Date.now() - outageStarted > maxOutageMs) {
      throw new CliError(`lost the connection to ${config.url} for over ${Math.round(maxOutageMs / 1000)} s (${reason}); last event #${lastSeq}`);
    }
    options.onReconnect?.(lastSeq, reason);
    attempt++;
    await sleep(Math.min(5000, 200 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2));
  }
}
