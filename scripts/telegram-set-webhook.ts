/**
 * `npm run telegram:set-webhook [-- --url https://orchestrator.example.com]`: points the Product
 * Owner's bot at this Orchestrator's webhook (`<url>/telegram/webhook`) with its secret token, and
 * sets the bot's command menu. Reads TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET, PUBLIC_URL and
 * TELEGRAM_API_URL from the environment, then from .dev.vars (DEV_VARS_FILE names another file).
 */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { Api } from "grammy";
import { readDevVars } from "./lib/dev-vars.ts";

const { values } = parseArgs({ options: { url: { type: "string" }, "drop-pending": { type: "boolean" } } });
const file = readDevVars(resolve(import.meta.dirname, "..", process.env.DEV_VARS_FILE ?? ".dev.vars"));
const setting = (name: string) => process.env[name] || file[name] || "";

const token = setting("TELEGRAM_BOT_TOKEN");
const secret = setting("TELEGRAM_WEBHOOK_SECRET");
const base = (values.url ?? setting("PUBLIC_URL")).replace(/\/+$/, "");
const problems = [
  !token && "TELEGRAM_BOT_TOKEN (the bot's token from @BotFather)",
  !secret && "TELEGRAM_WEBHOOK_SECRET (1-256 characters of A-Z, a-z, 0-9, _ and -; e.g. `openssl rand -hex 32`)",
  !base && "PUBLIC_URL or --url (where Telegram reaches this Orchestrator, https)",
].filter(Boolean);
if (problems.length) {
  process.stderr.write(`telegram:set-webhook needs ${problems.join(", ")}\n`);
  process.exit(2);
}
if (!/^[A-Za-z0-9_-]{1,256}$/.test(secret)) {
  process.stderr.write("TELEGRAM_WEBHOOK_SECRET may hold only A-Z, a-z, 0-9, _ and - (1-256 characters)\n");
  process.exit(2);
}
const api = new Api(token, { apiRoot: (setting("TELEGRAM_API_URL") || "https://api.telegram.org").replace(/\/+$/, "") });
try {
  const me = await api.getMe();
  const url = `${base}/telegram/webhook`;
  await api.setWebhook(url, { secret_token: secret, allowed_updates: ["message", "callback_query"], drop_pending_updates: values["drop-pending"] ?? false });
  await api.setMyCommands([
    { command: "start", description: "What I can do" },
    { command: "status", description: "Your projects and running tasks" },
  ]);
  const info = await api.getWebhookInfo();
  process.stdout.write(`@${me.username} now sends its updates to ${info.url} (with the secret token); pending updates: ${info.pending_update_count}\n`);
} catch (error) {
  process.stderr.write(`telegram:set-webhook failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(3);
}
