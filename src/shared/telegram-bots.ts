/**
 * The Telegram bot pool's contracts (`/api/telegram-bots`): what an admin sends and the view every
 * answer uses. No view carries a token: the database keeps it sealed, and only the deploy pipeline
 * opens it (src/telegram/telegram-bots.ts `botTokenFor`).
 */
import { z } from "zod";
import { Page } from "./api.ts";

/**
 * A bot token as @BotFather issues it: the bot's numeric id, a colon, 35 characters of base64url
 * (some slack either side). The format is checked before Telegram is asked, and it keeps the token
 * a single, harmless path segment in `/bot<token>/getMe`.
 */
export const BotToken = z.string().regex(/^\d{5,20}:[A-Za-z0-9_-]{30,60}$/, "must be a bot token as @BotFather gives it: <bot id>:<35 characters>");

export const RegisterBot = z.strictObject({ token: BotToken });
export type RegisterBot = z.infer<typeof RegisterBot>;

/** A bot's new token, after @BotFather's /revoke: the same bot, a token no project has seen. */
export const RotateBot = z.strictObject({ token: BotToken });
export type RotateBot = z.infer<typeof RotateBot>;

export const AllocateBot = z.strictObject({ projectId: z.string().min(1).max(64) });
export type AllocateBot = z.infer<typeof AllocateBot>;

export const BotListQuery = Page;

export const TelegramBotView = z.object({
  id: z.string(),
  /** Without the `@`, as Telegram's getMe gives it. */
  username: z.string(),
  /** The project the bot serves, or null while it is free. */
  projectId: z.string().nullable(),
  allocatedAt: z.string().nullable(),
  /**
   * It served a project whose code held its token: no project gets it until an admin rotates the
   * token (POST /api/telegram-bots/:id/rotate).
   */
  needsRotation: z.boolean(),
  createdAt: z.string(),
});
export type TelegramBotView = z.infer<typeof TelegramBotView>;
