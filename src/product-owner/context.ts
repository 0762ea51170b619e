/**
 * What each part of a Product Owner conversation is given by its Durable Object
 * (src/durable/product-owner.ts): the chat's name, its storage, env and logger, and the trace of the
 * item being handled.
 */
import type { Db } from "../db/client.ts";
import type { Principal } from "../lib/context.ts";
import type { Logger } from "../lib/log.ts";
import type { ChatUser, ConversationStore } from "./conversation-store.ts";
import type { ToolContext } from "./tools.ts";

export interface ChatContext {
  /** The agent's name: `tg:<chatId>` or `web:<userId>`. */
  readonly name: string;
  readonly env: Env;
  readonly store: ConversationStore;
  readonly log: Logger;
  /** The trace of the item being handled, as log fields. */
  traceFields(): { traceId?: string };
  /** What a tool acts with, as `principal`: the tasks it starts carry the item's trace on. */
  toolContext(db: Db, principal: Principal): ToolContext;
}

/** The person a queued item is from, and the reach their tools act with. */
export interface Person {
  user: ChatUser;
  principal: Principal;
}
