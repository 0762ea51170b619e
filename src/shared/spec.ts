/**
 * A project's spec: what the Architect makes of its description, stored on the project
 * (`projects.spec`) and read by every later step. The engineering settings in it (test command,
 * coverage threshold, rounds) can be overridden per project (`PATCH /api/projects/:id`), and the
 * overrides win.
 */
import { z } from "zod";
import { EnvName } from "./playbooks.ts";
import { PROJECT_TEMPLATES, TemplateName } from "./templates.ts";

/** Where a variable's value comes from (the same kinds as `project_secrets.kind`). */
export const ENV_KINDS = ["infra", "computed", "user", "bot"] as const;
export const EnvKind = z.enum(ENV_KINDS);

const Name = z.string().trim().min(1).max(100);
const Text = z.string().trim().min(1).max(2000);

export const DEFAULT_MAX_ITERATIONS = 3;
const DEFAULT_AGENT_TIMEOUT_SECONDS = 1500;
const DEFAULT_TEST_TIMEOUT_SECONDS = 600;
const DEFAULT_DECISION_TIMEOUT_SECONDS = 24 * 3600;
export const MAX_ITERATIONS_LIMIT = 20;

/** The settings the engineering loop runs by. */
export const EngineeringSettings = z.strictObject({
  testCommand: z.string().trim().min(1).max(2000),
  /** Line coverage (percent) the tests must reach; null: not measured. */
  coverageThreshold: z.number().min(0).max(100).nullable(),
  /** Developer → Tester rounds before a person is asked whether to go on. */
  maxIterations: z.number().int().min(1).max(MAX_ITERATIONS_LIMIT),
  /** How long the coding agent may work in one round, and the tests may run. */
  agentTimeoutSeconds: z.number().int().min(5).max(4 * 3600),
  testTimeoutSeconds: z.number().int().min(5).max(3600),
  /** How long a question to a person (go on after the last round?) waits before the task fails. */
  decisionTimeoutSeconds: z.number().int().min(5).max(30 * 24 * 3600),
});
export type EngineeringSettings = z.infer<typeof EngineeringSettings>;

/** The most acceptance checks a spec holds (each one is a request to the live app at every deploy). */
export const MAX_ACCEPTANCE_CHECKS = 20;

/**
 * A check that the live app does what was asked: one request and what its answer must be. The deploy
 * runs a project's checks on a new release before the route moves to it, and again through Caddy
 * after (src/workflows/deploy.ts; the runner's acceptance.check job).
 */
export const HttpCheck = z.strictObject({
  name: Name,
  method: z.enum(["GET", "POST", "PUT", "PATCH", "DELETE"]).default("GET"),
  path: z.string().startsWith("/").max(500),
  /** Sent as application/json when it parses as JSON, as text/plain otherwise. */
  body: z.string().max(10_000).optional(),
  expect: z.strictObject({
    status: z.number().int().min(100).max(599).default(200),
    /** Text the body must contain. */
    bodyContains: z.string().min(1).max(1000).optional(),
    /** A value in the JSON body, by JSON Pointer (RFC 6901: "/message", "/items/0/name"), and what it must equal. */
    // Any JSON value; spelled out rather than z.json(), whose recursion the OpenAPI document cannot show.
    json: z
      .strictObject({
        pointer: z.string().regex(/^(\/[^/]*)*$/, "must be a JSON Pointer: empty, or /-separated keys").max(200),
        equals: z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(z.unknown()), z.record(z.string(), z.unknown())]),
      })
      .optional(),
  }),
});
export type HttpCheck = z.infer<typeof HttpCheck>;

/**
 * A Telegram bot's check: a message sent to the bot as a person in a private chat would send it, and
 * text its reply must contain. It runs on the new release before it takes over from the previous one,
 * through the runner's Bot API gateway (runner/src/bot-gateway.ts); a bot's messages never pass Caddy.
 */
export const MessageCheck = z.strictObject({
  name: Name,
  /** The message, e.g. "/start" or "/weather Lisbon". */
  send: z.string().min(1).max(4096),
  expect: z.strictObject({
    /** Text one of the bot's replies must contain. */
    replyContains: z.string().min(1).max(1000),
  }),
});
export type MessageCheck = z.infer<typeof MessageCheck>;

export const AcceptanceCheck = z.union([HttpCheck, MessageCheck]);
export type AcceptanceCheck = z.infer<typeof AcceptanceCheck>;

export const isMessageCheck = (check: AcceptanceCheck): check is MessageCheck => "send" in check;

/** A project's acceptance checks (the spec's `acceptance`, an owner's PATCH, a job's checks). */
export const AcceptanceChecks = z.array(AcceptanceCheck).max(MAX_ACCEPTANCE_CHECKS);

export const ProjectSpec = z.strictObject({
  summary: Text,
  template: TemplateName.default("python-http"),
  modules: z.array(z.strictObject({ name: Name, purpose: Text })).min(1).max(30),
  entities: z
    .array(z.strictObject({ name: Name, fields: z.array(z.strictObject({ name: Name, type: z.string().trim().min(1).max(100) })).max(50) }))
    .max(30)
    .default([]),
  /** HTTP routes the service serves, beyond /healthz. */
  routes: z.array(z.strictObject({ method: z.enum(["GET", "POST", "PUT", "PATCH", "DELETE"]), path: z.string().startsWith("/").max(200), purpose: Text })).max(50).default([]),
  env: z.array(z.strictObject({ name: EnvName, kind: EnvKind, description: Text })).max(50).default([]),
  /** What the live app must answer (run at every deploy, before and after the route moves). */
  acceptance: AcceptanceChecks.default([]),
  testCommand: EngineeringSettings.shape.testCommand.optional(),
  coverageThreshold: EngineeringSettings.shape.coverageThreshold.default(null),
  maxIterations: EngineeringSettings.shape.maxIterations.default(DEFAULT_MAX_ITERATIONS),
}).refine((spec) => spec.template === "telegram-bot" || !spec.acceptance.some(isMessageCheck), {
  message: "a check that sends a message needs a Telegram bot (template telegram-bot); other kinds are checked with requests",
  path: ["acceptance"],
});
export type ProjectSpec = z.infer<typeof ProjectSpec>;

/** What `PATCH /api/projects/:id` may set; stored in `projects.config.engineering`. */
export const EngineeringOverrides = EngineeringSettings.partial();
export type EngineeringOverrides = z.infer<typeof EngineeringOverrides>;

/**
 * The settings a run uses: the overrides, else the spec, else the template's. With a coverage
 * threshold and no command of its own, the template's coverage command is used.
 */
export function engineeringSettings(spec: ProjectSpec, overrides: EngineeringOverrides = {}): EngineeringSettings {
  const template = PROJECT_TEMPLATES[spec.template];
  const coverageThreshold = overrides.coverageThreshold !== undefined ? overrides.coverageThreshold : spec.coverageThreshold;
  const testCommand = overrides.testCommand ?? spec.testCommand ?? (coverageThreshold !== null ? template.coverageCommand : template.testCommand);
  return {
    testCommand,
    coverageThreshold,
    maxIterations: overrides.maxIterations ?? spec.maxIterations,
    agentTimeoutSeconds: overrides.agentTimeoutSeconds ?? DEFAULT_AGENT_TIMEOUT_SECONDS,
    testTimeoutSeconds: overrides.testTimeoutSeconds ?? DEFAULT_TEST_TIMEOUT_SECONDS,
    decisionTimeoutSeconds: overrides.decisionTimeoutSeconds ?? DEFAULT_DECISION_TIMEOUT_SECONDS,
  };
}
