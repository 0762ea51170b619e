// Runs the bot: long polling for its updates, and an HTTP server on PORT whose /healthz says whether
// it is up (the deploy's health check). Long polling needs no public URL, TLS or webhook secret. Two
// releases run side by side for a moment during a redeploy; Telegram lets one poll at a time and
// answers the other 409, which waits and polls again, so whichever release runs keeps answering and
// each update is handled once.
import { createServer } from "node:http";
import { GrammyError } from "grammy";
import { createBot } from "./bot.ts";
import { Store } from "./store.ts";

const token = process.env.TELEGRAM_BOT_TOKEN;
if (!token) throw new Error("TELEGRAM_BOT_TOKEN is not set");
const store = new Store();
const bot = createBot(token, store, process.env.TELEGRAM_API_URL || undefined);
let ready = false;

const health = createServer((req, res) => {
  const up = req.url === "/healthz" && ready;
  res.writeHead(up ? 200 : 503, { "content-type": "application/json" });
  res.end(JSON.stringify(up ? { ok: true, bot: bot.botInfo.username } : { ok: false }));
});
health.listen(Number(process.env.PORT ?? 8000), "0.0.0.0");

async function poll(): Promise<void> {
  for (;;) {
    try {
      await bot.start({ drop_pending_updates: false, onStart: (me) => { ready = true; console.log(`@${me.username} is polling`); } });
      return;
    } catch (error) {
      if (!(error instanceof GrammyError && error.error_code === 409)) throw error;
      console.log("another instance is polling (a release taking over): trying again in 5 s");
      await new Promise((resolve) => setTimeout(resolve, 5000));
    }
  }
}

process.on("SIGTERM", () => {
  void bot.stop().finally(() => {
    health.close();
    store.close();
    process.exit(0);
  });
});

await poll();
