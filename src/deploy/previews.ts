/**
 * A change's preview: its own release on the project's server at `<project>--<n>.<base domain>`,
 * built from the change's tested branch by the deploy pipeline (DeployParams.preview) with the same
 * health gate and acceptance checks as production (the project's checks with the change's own), and
 * sharing nothing with production: its files, image, network and data go under `<project>--<n>`
 * (releaseProject), its route is the change's (changes.previewDeploymentId), and its secrets are its
 * own. Shipping the change removes it once production is live; discarding removes it with its data.
 *
 * - Infra secrets (passwords, signing keys) are derived for the preview (an HMAC of the factory's key,
 *   the project, the change and the name): stable across the preview's redeploys, never production's,
 *   never stored.
 * - The owner's user secrets go in only when the project allows it (config.previews.userSecrets);
 *   otherwise each is an empty value, and the deploy says so.
 * - The data directory starts empty, or as a copy of production's (config.previews.data: "copy").
 */
import { DEFAULT_BASE_DOMAIN } from "./deploys.ts";
import { derivedSecret } from "../lib/secrets.ts";

/** Where a change's preview answers: a label of its own under the server's base domain (no project name holds "--"). */
export function previewDomain(projectName: string, preview: number, server: { baseDomain: string | null }): string {
  return `${projectName}--${preview}.${server.baseDomain ?? DEFAULT_BASE_DOMAIN}`.toLowerCase();
}

/** A preview's value of an infra secret: 64 hex characters, as generateSecret's, derived rather than stored. */
export function previewSecret(encryptionKey: string, projectId: string, preview: number, name: string): Promise<string> {
  return derivedSecret(encryptionKey, `preview\n${projectId}\n${preview}\n${name}`);
}
