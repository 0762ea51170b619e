/**
 * The Product Owner's conversation contract: what the web console and `orchestrator chat` send over
 * the chat WebSocket (`GET /chat/ws`), what they get back, and the names the agent's parts share
 * (session states, capability groups). Telegram carries the same entries as messages and inline
 * keyboards.
 */
import * as z from "zod";

/** PROCESSING: a turn is running; AWAITING: the agent waits for the person (a confirmation, an answer); IDLE: neither. */
export const SESSION_STATES = ["IDLE", "PROCESSING", "AWAITING"] as const;
export const SessionState = z.enum(SESSION_STATES);
export type SessionState = z.infer<typeof SessionState>;

/** The seed's capability groups: the intent parser picks some, and only their tools reach the model. */
export const CAPABILITY_GROUPS = ["project_management", "engineering", "deploy", "infrastructure", "diagnose", "admin"] as const;
export const CapabilityGroup = z.enum(CAPABILITY_GROUPS);
export type CapabilityGroup = z.infer<typeof CapabilityGroup>;

/**
 * Who a web or CLI chat connection is, as the chat route (having checked the sign-in) tells the
 * Product Owner on the WebSocket upgrade it forwards: the person, and the key their session acts with.
 */
export const ChatSession = z.object({
  user: z.object({ userId: z.string().min(1), name: z.string(), isAdmin: z.boolean(), telegramId: z.number().int().optional() }),
  keyId: z.string().min(1),
});
export type ChatSession = z.infer<typeof ChatSession>;

/** The longest message a person may send (Telegram's own limit). */
export const CHAT_TEXT_LIMIT = 4096;

export const ChatButton = z.object({
  label: z.string(),
  /** Sent back as `chat:choice` with the entry's actionId. */
  choice: z.string(),
});
export type ChatButton = z.infer<typeof ChatButton>;

/** One message in the conversation, as the person sees it. */
export const ChatEntry = z.object({
  id: z.string(),
  at: z.string(),
  from: z.enum(["user", "agent"]),
  text: z.string(),
  /** A question with buttons: answer with `chat:choice` { actionId, choice }. */
  actionId: z.string().optional(),
  buttons: z.array(ChatButton).optional(),
  /** A task this message is about, and the signed link to its live view. */
  taskId: z.string().optional(),
  taskLink: z.string().optional(),
});
export type ChatEntry = z.infer<typeof ChatEntry>;

export const ClientMessage = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("chat:message"), text: z.string().trim().min(1, "the message is empty").max(CHAT_TEXT_LIMIT) }),
  z.strictObject({ type: z.literal("chat:choice"), actionId: z.string().min(1).max(80), choice: z.string().min(1).max(80) }),
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

/**
 * What the Product Owner sends on the chat WebSocket; the server builds these frames typed by it and
 * the CLI reads them through it. Objects, not strict: a newer server's extra fields are ignored.
 * The socket carries the agents SDK's own frames (other `type`s) too: readers skip those.
 */
export const ServerMessage = z.discriminatedUnion("type", [
  /** Sent on connect: the conversation so far (its latest entries) and the session state. */
  z.object({ type: z.literal("chat:history"), entries: z.array(ChatEntry), state: SessionState }),
  z.object({ type: z.literal("chat:entry"), entry: ChatEntry }),
  z.object({ type: z.literal("chat:state"), state: SessionState }),
  /** A message the agent could not take (malformed, too long); nothing was lost from the conversation. */
  z.object({ type: z.literal("chat:error"), code: z.string(), message: z.string() }),
]);
export type ServerMessage = z.infer<typeof ServerMessage>;

/** The `type`s of ServerMessage: a frame of another type on the chat socket is not the Product Owner's. */
export const SERVER_MESSAGE_TYPES: ReadonlySet<string> = new Set(ServerMessage.options.map((option) => option.shape.type.value));

/**
 * `POST /api/chat/link`'s answer: a signed chat token for the caller (what the web console trades its
 * API key for, and connects to `GET /chat/ws?token=` with), when it expires, and the console's URL with it.
 */
export const ChatLink = z.object({ token: z.string(), expiresAt: z.string(), url: z.string() });
export type ChatLink = z.infer<typeof ChatLink>;
