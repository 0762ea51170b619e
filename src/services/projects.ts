/** Projects: who may see which. */
import { eq, type SQL, sql } from "drizzle-orm";
import { projects } from "../db/schema.ts";
import type { Principal } from "../lib/context.ts";

/** Admins see every project; anyone else only their own. A caller with no user sees none: it fails closed. */
export function projectVisibleTo(principal: Principal): SQL | undefined {
  if (principal.isAdmin) return undefined;
  return principal.userId ? eq(projects.ownerId, principal.userId) : sql`false`;
}
