import type { Db } from "../db/client.ts";
import type { Logger } from "./log.ts";

export type Scope = "admin" | "user" | "runner";

/** Who is calling: the bootstrap admin (the ADMIN_API_KEY secret) or the owner of a stored key. */
export interface Principal {
  /** The users row behind the key; the bootstrap admin is given one on first use (see src/platform/auth.ts). */
  userId: string | null;
  keyId: string;
  scopes: Scope[];
  isAdmin: boolean;
  /** Set for a key limited to one project: that project and its tasks are all it reaches. */
  projectId?: string;
  /** Set for a view token: the one task whose live stream it may open, and nothing else. */
  viewTaskId?: string;
}

/** The one Hono environment type for every route. */
export interface AppEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    log: Logger;
    db: Db;
    principal: Principal;
    /** The trace this request belongs to (the caller's traceparent, or a new one). */
    traceparent: string;
  };
}
