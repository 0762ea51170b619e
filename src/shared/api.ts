import { z } from "zod";

/** A project name becomes a DNS label (`<name>.<base-domain>`): lower-case, 3–40 characters. */
export const ProjectName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{1,38}[a-z0-9]$/, "must be 3-40 characters of a-z, 0-9 and '-', starting with a letter")
  .refine((name) => !name.includes("--"), "must not contain '--'");

export const ProjectStatus = z.enum(["draft", "engineering", "ready", "deploying", "deployed", "failed", "archived"]);

const JsonObject = z.record(z.string(), z.unknown());

export const CreateProject = z.strictObject({
  name: ProjectName,
  description: z.string().max(10_000).optional(),
  spec: JsonObject.optional(),
  config: JsonObject.optional(),
  /** Admins may create a project on behalf of a user. */
  ownerId: z.string().min(1).optional(),
});
export type CreateProject = z.infer<typeof CreateProject>;

export const UpdateProject = z
  .strictObject({
    description: z.string().max(10_000).optional(),
    status: ProjectStatus.optional(),
    spec: JsonObject.nullable().optional(),
    repositoryUrl: z.url({ protocol: /^https?$/ }).nullable().optional(),
    config: JsonObject.optional(),
  })
  .refine((patch) => Object.keys(patch).length > 0, "give at least one field to change");
export type UpdateProject = z.infer<typeof UpdateProject>;

export const CreateUser = z.strictObject({
  name: z.string().trim().min(1).max(200),
  telegramId: z.number().int().positive().optional(),
  isAdmin: z.boolean().optional(),
});
export type CreateUser = z.infer<typeof CreateUser>;

export const Scope = z.enum(["admin", "user", "runner"]);

export const CreateApiKey = z.strictObject({
  userId: z.string().min(1),
  name: z.string().trim().min(1).max(200),
  scopes: z.array(Scope).min(1).default(["user"]),
  expiresAt: z.iso.datetime({ offset: true }).optional(),
});
export type CreateApiKey = z.infer<typeof CreateApiKey>;

/** `?limit=&offset=` for list endpoints. */
export const Page = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  offset: z.coerce.number().int().min(0).default(0),
});
