// {{project_name}}: a Telegram bot on grammY. Add a command with bot.command(name, handler); what the
// bot is for is in README.md. The tests drive it with bot.handleUpdate and read what it sends.
import { Bot } from "grammy";
import type { Store } from "./store.ts";

export function createBot(token: string, store: Store, apiRoot?: string): Bot {
  const bot = new Bot(token, { client: apiRoot ? { apiRoot } : {} });

  bot.command("start", async (ctx) => {
    store.rememberChat(ctx.chat.id, ctx.from?.first_name);
    await ctx.reply("Hello! Send /help to see what I can do.");
  });

  bot.command("help", (ctx) => ctx.reply("/start: say hello\n/help: this list"));

  return bot;
}
