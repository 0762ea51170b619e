/**
 * A job as the RunnerHub stores it: signed for its runner, and with any secrets sealed (AES-GCM,
 * src/lib/secrets.ts) until the runner has it; the stored copy shows them redacted.
 */
import { newId, randomToken } from "../lib/crypto.ts";
import { loadJobSigningKey } from "./job-signing.ts";
import { openText, packSealed, sealText, unpackSealed } from "../lib/secrets.ts";
import type { CreateJob } from "../shared/api.ts";
import { payloadSecrets, redactPayload } from "../shared/job-payloads.ts";
import { type JobEnvelope, signJob } from "../shared/jobs.ts";
import type { JobNotify, JobRow, NewJob } from "./job-store.ts";

export async function sealedJob(
  env: Pick<Env, "JOB_SIGNING_KEY" | "SECRETS_ENCRYPTION_KEY">,
  runnerId: string,
  input: CreateJob & { notify?: JobNotify },
  payload: Record<string, unknown> & { timeoutSeconds: number },
  now: number,
): Promise<NewJob> {
  const iat = Math.floor(now / 1000);
  const id = newId("job");
  const envelope: JobEnvelope = {
    v: 1,
    id,
    runner: runnerId,
    type: input.type,
    ...(input.taskId ? { taskId: input.taskId } : {}),
    payload,
    iat,
    exp: iat + input.ttlSeconds,
    nonce: randomToken(24),
    ...(input.traceparent ? { traceparent: input.traceparent } : {}),
  };
  const signed = await signJob((await loadJobSigningKey(env)).privateKey, envelope);
  const hasSecrets = payloadSecrets(input.type, signed.envelope.payload).length > 0;
  const sealed = hasSecrets ? packSealed(await sealText(env.SECRETS_ENCRYPTION_KEY, "job-secrets", JSON.stringify(signed.envelope), id)) : null;
  const shown = hasSecrets ? { ...signed.envelope, payload: redactPayload(input.type, signed.envelope.payload) } : signed.envelope;
  return {
    id,
    type: input.type,
    task_id: input.taskId ?? null,
    finishTask: input.finishTask,
    envelope: JSON.stringify(shown),
    signature: signed.signature,
    sealed_envelope: sealed,
    expires_at: envelope.exp * 1000,
    timeout_seconds: payload.timeoutSeconds,
    notify: input.notify ? JSON.stringify(input.notify) : null,
    idem_key: input.idempotencyKey ?? null,
    traceparent: input.traceparent ?? null,
  };
}

/** The envelope to send: the sealed one opened, or the stored one when it holds no secrets. Throws when it cannot be opened. */
export async function envelopeToSend(env: Pick<Env, "SECRETS_ENCRYPTION_KEY">, row: JobRow): Promise<unknown> {
  if (!row.sealed_envelope) return JSON.parse(row.envelope);
  return JSON.parse(await openText(env.SECRETS_ENCRYPTION_KEY, "job-secrets", unpackSealed(row.sealed_envelope), row.id));
}
