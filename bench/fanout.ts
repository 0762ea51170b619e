/**
 * `npm run bench -- fanout`: one task, W watchers, N events, through the local stack
 * (wrangler dev + TaskStream DO + embedded Postgres), beside the seed's "Variant A" on a real Redis:
 * one stream per user, XREAD BLOCK with client-side filtering by task id, while 50 other tasks of
 * the same user write at the same rate. Latency is append-to-receipt; one JSON line per case.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { Redis } from "ioredis";
import WebSocket from "ws";
import { startLocalDatabase } from "../scripts/lib/local-db.ts";
import { startStack, type Stack } from "../scripts/lib/local-stack.ts";
import { freePort } from "../scripts/lib/ports.ts";
import { waitFor } from "../scripts/lib/processes.ts";
import { createAcker } from "../src/shared/events.ts";
import { type LatencySummary, nowMs, summarize } from "./stats.ts";

const OTHER_TASKS = 50;

interface Options {
  watchers: number[];
  events: number;
  only?: string;
}

async function oursCase(stack: Stack, watchers: number, events: number): Promise<LatencySummary> {
  const task = await stack.api<{ task: { id: string } }>("/api/tasks", { json: { type: "engineering" } });
  const taskId = task.body.task.id;
  const latencies = new Float64Array(watchers * events);
  let recorded = 0;
  let lastReceipt = 0;
  const sockets: WebSocket[] = [];
  let live = 0;

  const open = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${stack.port}/api/tasks/${taskId}/ws`, { headers: { authorization: `Bearer ${stack.adminKey}` } });
      const acker = createAcker((seq) => ws.send(JSON.stringify({ type: "event:ack", seq })));
      ws.on("message", (raw: Buffer) => {
        const frame = JSON.parse(raw.toString()) as { type: string; event?: { seq: number; data?: { sentAt?: number } } };
        if (frame.type === "stream:live") {
          live++;
          resolve();
        } else if (frame.type === "event:appended" && frame.event) {
          const at = nowMs();
          latencies[recorded++] = at - (frame.event.data?.sentAt ?? at);
          lastReceipt = at;
          acker.received(frame.event.seq);
        }
      });
      ws.on("error", reject);
      ws.on("close", () => acker.stop());
      sockets.push(ws);
    });
  for (let i = 0; i < watchers; i += 50) await Promise.all(Array.from({ length: Math.min(50, watchers - i) }, open));
  if (live !== watchers) throw new Error(`only ${live}/${watchers} watchers went live`);

  const started = nowMs();
  for (let i = 1; i <= events; i++) {
    const res = await stack.api(`/api/tasks/${taskId}/events`, { json: { type: "log", message: `event ${i}`, data: { sentAt: nowMs() } } });
    if (res.status !== 201) throw new Error(`append ${i}: ${res.status} ${JSON.stringify(res.body)}`);
  }
  await waitFor(() => (recorded >= watchers * events ? true : undefined), 300_000, () => `${recorded}/${watchers * events} deliveries`);
  for (const ws of sockets) ws.close();
  return summarize(latencies, events, watchers, lastReceipt - started);
}

async function redisCase(port: number, watchers: number, events: number): Promise<LatencySummary> {
  const userStream = `agent:events:bench-user-${watchers}`;
  const producer = new Redis({ port, host: "127.0.0.1" });
  await producer.del(userStream);
  const latencies = new Float64Array(watchers * events);
  let recorded = 0;
  let lastReceipt = 0;
  const ourTask = "eng-ours";
  const readers: Redis[] = [];
  const loops: Promise<void>[] = [];

  for (let w = 0; w < watchers; w++) {
    const reader = new Redis({ port, host: "127.0.0.1" });
    readers.push(reader);
    loops.push(
      (async () => {
        let lastId = "0-0";
        let mine = 0;
        while (mine < events) {
          const batch = (await reader.xread("COUNT", 100, "BLOCK", 5000, "STREAMS", userStream, lastId));
          for (const [, entries] of batch ?? []) {
            for (const [id, fields] of entries) {
              lastId = id;
              // Variant A: every reader parses every event of the user and keeps its task's.
              const event = JSON.parse(fields[1] ?? "{}") as { task_id: string; sentAt: number };
              if (event.task_id !== ourTask) continue;
              const at = nowMs();
              latencies[recorded++] = at - event.sentAt;
              lastReceipt = at;
              mine++;
            }
          }
        }
      })(),
    );
  }
  await new Promise((resolve) => setTimeout(resolve, 200));

  const started = nowMs();
  for (let i = 1; i <= events; i++) {
    const pipeline = producer.pipeline();
    pipeline.xadd(userStream, "*", "data", JSON.stringify({ task_id: ourTask, seq: i, type: "log", message: `event ${i}`, sentAt: nowMs() }));
    for (let other = 0; other < OTHER_TASKS; other++) {
      pipeline.xadd(userStream, "*", "data", JSON.stringify({ task_id: `eng-other-${other}`, seq: i, type: "log", message: `event ${i}`, sentAt: nowMs() }));
    }
    await pipeline.exec();
  }
  await Promise.all(loops);
  for (const reader of readers) reader.disconnect();
  await producer.del(userStream);
  producer.disconnect();
  return summarize(latencies, events, watchers, lastReceipt - started);
}

async function startRedis(): Promise<{ port: number; process: ChildProcess }> {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--maxclients", "20000"], { stdio: "ignore" });
  child.on("error", (error) => {
    throw new Error(`redis-server could not start (${error.message}); install Debian's redis-server (scripts/install-system-deps.sh)`);
  });
  const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => 100 });
  probe.on("error", () => undefined); // refused until redis-server is up
  await waitFor(async () => ((await probe.ping().catch(() => "")) === "PONG" ? true : undefined), 10_000, () => "redis-server did not answer");
  probe.disconnect();
  return { port, process: child };
}

export async function fanout(options: Options): Promise<void> {
  const db = await startLocalDatabase("bench_fanout");
  const stack = await startStack({ databaseUrl: db.databaseUrl, dbWsProxy: db.wsProxy, adminKey: `ork_bench${Date.now()}`, logLevel: "error" });
  const redis = await startRedis();
  try {
    for (const watchers of options.watchers) {
      const ours = options.only === "redis" ? undefined : await oursCase(stack, watchers, options.events);
      const redisVariantA = options.only === "ours" ? undefined : await redisCase(redis.port, watchers, options.events);
      console.log(
        JSON.stringify({ bench: "fanout", watchers, events: options.events, other_tasks_in_redis: OTHER_TASKS, ours, redis_variant_a: redisVariantA }),
      );
    }
  } finally {
    redis.process.kill("SIGTERM");
    await stack.stop();
    await db.stop();
  }
}
