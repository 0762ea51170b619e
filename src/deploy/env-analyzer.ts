/**
 * EnvAnalyzer and SecretResolver's rules: which of a project's `.env.example` variables are generated
 * here (infra), derived from the deployment (computed), or a person's to give (user), and the values
 * of the first two. Classification is a model call (zod-checked); a project's variables classified
 * once are not sent again.
 */
import type OpenAI from "openai";
import { EnvClassification, type EnvKind } from "../shared/deploys.ts";

export interface EnvExampleVar {
  name: string;
  /** The example's value (often empty, or a placeholder). */
  example: string;
  /** The comment lines just above it. */
  comment: string;
}

/** The variables of a `.env.example` (NAME=value lines; `export` and quotes allowed; comments kept). */
export function parseEnvExample(text: string): EnvExampleVar[] {
  const vars: EnvExampleVar[] = [];
  let comment: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) {
      comment = [];
      continue;
    }
    if (line.startsWith("#")) {
      comment.push(line.replace(/^#+\s?/, ""));
      continue;
    }
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (match?.[1] && !vars.some((known) => known.name === match[1])) {
      vars.push({ name: match[1], example: (match[2] ?? "").replace(/^(['"])(.*)\1$/, "$2"), comment: comment.join(" ") });
    }
    comment = [];
  }
  return vars;
}

export interface DeploymentFacts {
  domain: string;
  /** Where visitors reach it (projectUrl). */
  url: string;
  containerPort: number;
  projectName: string;
  /** The Bot API the project's bot calls (RELEASE_TELEGRAM_API_URL). */
  telegramApiUrl: string;
}

/** The computed variables this pipeline knows how to fill; a "computed" one it does not know is asked of the person. */
const COMPUTED: Record<string, (facts: DeploymentFacts) => string> = {
  PORT: (facts) => String(facts.containerPort),
  HOST: () => "0.0.0.0",
  DOMAIN: (facts) => facts.domain,
  HOSTNAME: (facts) => facts.domain,
  PUBLIC_URL: (facts) => facts.url,
  BASE_URL: (facts) => facts.url,
  APP_URL: (facts) => facts.url,
  SITE_URL: (facts) => facts.url,
  WEBHOOK_URL: (facts) => `${facts.url}/webhook`,
  PROJECT_NAME: (facts) => facts.projectName,
  TELEGRAM_API_URL: (facts) => facts.telegramApiUrl,
  NODE_ENV: () => "production",
  APP_ENV: () => "production",
  ENVIRONMENT: () => "production",
};
/** Their names: not secrets (a release's logs show their values; every other value of its env file is masked). */
export const COMPUTED_ENV_NAMES = Object.keys(COMPUTED);

export function computedValue(name: string, facts: DeploymentFacts): string | undefined {
  return Object.hasOwn(COMPUTED, name) ? COMPUTED[name]?.(facts) : undefined;
}

/** A generated secret: 32 random bytes, hex (fits passwords, keys and tokens alike). */
export function generateSecret(): string {
  return [...crypto.getRandomValues(new Uint8Array(32))].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

export const ENV_ANALYZER_PROMPT = `You are the EnvAnalyzer of a deploy pipeline. For each environment variable of a service, say where its value comes from:
- "infra": a secret this platform generates itself (passwords, signing keys, session secrets, internal tokens);
- "computed": derived from the deployment (PORT, HOST, DOMAIN, PUBLIC_URL, DATABASE_URL of a database the platform runs, NODE_ENV…);
- "user": a credential or setting only the service's owner has (third-party API keys, account ids).
Answer with JSON only: {"variables": [{"name": "...", "kind": "infra" | "computed" | "user", "reason": "a few words"}]}, one entry per variable given, nothing else.`;

export class EnvAnalysisFailed extends Error {
  readonly usage: { promptTokens: number; completionTokens: number };
  constructor(message: string, usage: { promptTokens: number; completionTokens: number }) {
    super(message);
    this.usage = usage;
  }
}

/**
 * Classifies `vars` with one model call (one retry showing the validation errors). The answer must
 * name every variable asked about, and only those.
 */
export async function classifyEnv(
  client: OpenAI,
  model: string,
  vars: readonly EnvExampleVar[],
): Promise<{ kinds: Record<string, { kind: EnvKind; reason: string }>; usage: { promptTokens: number; completionTokens: number } }> {
  const usage = { promptTokens: 0, completionTokens: 0 };
  const listing = vars.map((v) => `${v.name}=${v.example}${v.comment ? `   # ${v.comment}` : ""}`).join("\n");
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
    { role: "system", content: ENV_ANALYZER_PROMPT },
    { role: "user", content: `The service's .env.example:\n${listing}` },
  ];
  let problem = "";
  for (let attempt = 1; attempt <= 2; attempt++) {
    const completion = await client.chat.completions.create({ model, messages, response_format: { type: "json_object" }, temperature: 0 });
    usage.promptTokens += completion.usage?.prompt_tokens ?? 0;
    usage.completionTokens += completion.usage?.completion_tokens ?? 0;
    const content = completion.choices[0]?.message.content ?? "";
    problem = checkAnswer(content, vars);
    if (!problem) {
      const parsed = EnvClassification.parse(JSON.parse(content));
      return { kinds: Object.fromEntries(parsed.variables.map((v) => [v.name, { kind: v.kind, reason: v.reason }])), usage };
    }
    messages.push({ role: "assistant", content }, { role: "user", content: `That answer cannot be used: ${problem}. Answer again with JSON only, one entry per variable.` });
  }
  throw new EnvAnalysisFailed(`the EnvAnalyzer's answer could not be used twice: ${problem}`, usage);
}

function checkAnswer(content: string, vars: readonly EnvExampleVar[]): string {
  let json: unknown;
  try {
    json = JSON.parse(content);
  } catch {
    return "it is not JSON";
  }
  const parsed = EnvClassification.safeParse(json);
  if (!parsed.success) return parsed.error.issues.map((issue) => `${issue.path.join(".") || "answer"}: ${issue.message}`).join("; ");
  const named = new Set(parsed.data.variables.map((v) => v.name));
  const missing = vars.filter((v) => !named.has(v.name)).map((v) => v.name);
  const extra = [...named].filter((name) => !vars.some((v) => v.name === name));
  if (missing.length) return `it leaves out ${missing.join(", ")}`;
  if (extra.length) return `it names variables that were not asked about: ${extra.join(", ")}`;
  return "";
}
