/**
 * `orchestrator-runner enroll`: generates this runner's Ed25519 key pair (the private key never
 * leaves the machine), trades the one-time token and the public key for a runner id and the control
 * plane's public key, and writes them to the config file with mode 0600.
 */
import { existsSync } from "node:fs";
import { EnrollRunnerResponse } from "../../src/shared/api.ts";
import { ErrorBody } from "../../src/shared/errors.ts";
import { generateKeySeed } from "../../src/shared/jobs.ts";
import { type RunnerConfigInput, saveConfig } from "./config.ts";
import { RUNNER_VERSION } from "./version.ts";

export class EnrollError extends Error {}

export async function enroll(options: {
  edge: string;
  token: string;
  configPath: string;
  /** Settings to keep in the new config (stateDir, caddy…), e.g. from an earlier one. */
  settings?: Partial<RunnerConfigInput>;
  force?: boolean;
}): Promise<EnrollRunnerResponse & { configPath: string }> {
  if (existsSync(options.configPath) && !options.force) {
    throw new EnrollError(`${options.configPath} already exists; pass --force to replace this runner's identity`);
  }
  let edge: URL;
  try {
    edge = new URL(options.edge);
  } catch {
    throw new EnrollError(`--edge must be the control plane's URL, e.g. https://orchestrator.example.workers.dev (got "${options.edge}")`);
  }
  // The control plane's public key is trusted from this answer on: only over TLS, or on this machine.
  const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(edge.hostname);
  if (edge.protocol !== "https:" && !loopback) {
    throw new EnrollError(`--edge must be an https:// URL (got ${edge.origin}); plain http is accepted only for loopback`);
  }
  const { seed, publicKey } = await generateKeySeed();
  let response: Response;
  try {
    response = await fetch(new URL("/runner/enroll", edge), {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": `orchestrator-runner/${RUNNER_VERSION}` },
      body: JSON.stringify({ token: options.token, publicKey, version: RUNNER_VERSION }),
    });
  } catch (error) {
    throw new EnrollError(`cannot reach ${edge.origin}: ${error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error)}`);
  }
  const text = await response.text();
  if (!response.ok) {
    let message = text.slice(0, 300);
    try {
      message = ErrorBody.parse(JSON.parse(text)).error.message;
    } catch {
      // not JSON: show the start of the body
    }
    throw new EnrollError(`enrollment refused (${response.status}): ${message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const answer = EnrollRunnerResponse.safeParse(json);
  if (!answer.success) throw new EnrollError(`enrollment answered with something this runner does not understand (${answer.error.issues[0]?.message ?? "unreadable"}); is the runner older than the control plane?`);
  const body = answer.data;
  saveConfig(options.configPath, {
    ...options.settings,
    edge: edge.origin,
    runnerId: body.runnerId,
    server: body.server,
    privateKey: seed,
    publicKey,
    controlPlanePublicKey: body.controlPlanePublicKey,
  });
  return { ...body, configPath: options.configPath };
}
