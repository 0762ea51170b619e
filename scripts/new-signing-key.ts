/** Prints a fresh JOB_SIGNING_KEY (base64url Ed25519 seed) and its public key, for `wrangler secret put`. */
import { generateKeySeed } from "../src/shared/jobs.ts";

const { seed, publicKey } = await generateKeySeed();
process.stdout.write(`JOB_SIGNING_KEY=${seed}\n`);
process.stderr.write(`public key (runners receive it at enrollment): ${publicKey}\n`);
