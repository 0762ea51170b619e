/**
 * When a person must decide: an incident that needs human approval (a financial decision, tests that
 * still fail after the last round), and the escalation of a turn that failed or cannot go on.
 */
import type { Db } from "../db/client.ts";
import { incidents } from "../db/schema.ts";
import { AppError } from "../lib/app-error.ts";
import { newId } from "../lib/crypto.ts";
import type { ChatContext } from "./context.ts";

export class Escalation {
  private readonly chat: ChatContext;
  private readonly say: (text: string) => Promise<unknown>;

  constructor(chat: ChatContext, say: (text: string) => Promise<unknown>) {
    this.chat = chat;
    this.say = say;
  }

  async recordApproval(db: Db, reason: string, detail: Record<string, unknown>): Promise<string> {
    const id = newId("inc");
    await db.insert(incidents).values({ id, kind: "needs_human_approval", severity: "warning", message: `Product Owner (${this.chat.name}): ${reason}`, data: { chat: this.chat.name, ...detail } });
    this.chat.store.set("needsHumanApproval", { reason, incident: id, at: new Date().toISOString() });
    return id;
  }

  async escalate(db: Db, reason: string, detail: Record<string, unknown>): Promise<void> {
    let incident = "";
    try {
      incident = await this.recordApproval(db, reason, detail);
    } catch (error) {
      this.chat.log.error("could not record an escalation", { chat: this.chat.name, error: error instanceof Error ? error.message : String(error) });
    }
    await this.say(`I need a person to decide how to go on: ${reason}. ${incident ? `I flagged it for an admin (incident ${incident}). ` : ""}Tell me what you would like me to do.`);
  }

  /** A queued item that failed: a budget that ran out is said as such; anything else is escalated. */
  async failed(db: Db, error: unknown): Promise<void> {
    if (error instanceof AppError && error.code === "budget_exceeded") {
      await this.say(`I can't go on: ${error.message}. No model call was made.`);
      return;
    }
    this.chat.log.error("product owner turn failed", { chat: this.chat.name, ...this.chat.traceFields(), error: error instanceof Error ? error.message : String(error) });
    await this.escalate(db, "something failed on my side", { error: error instanceof Error ? error.message : String(error) });
  }
}
