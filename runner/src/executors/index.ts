/** Every job type the runner executes, by name. A type missing here is refused before anything runs. */
import type { JobType } from "../../../src/shared/jobs.ts";
import { acceptanceCheck } from "./acceptance-check.ts";
import { ansiblePlaybook, provision } from "./ansible.ts";
import { caddySync } from "./caddy-sync.ts";
import { dockerRun } from "./docker-run.ts";
import { healthCheck } from "./health-check.ts";
import { noop } from "./noop.ts";
import { releaseLogs } from "./release-logs.ts";
import { repoScaffold } from "./repo-scaffold.ts";
import type { Executor } from "./types.ts";

// Each payload was parsed with its own schema before it gets here, hence the widening.
export const executors: Record<JobType, Executor<never>> = {
  noop,
  "docker.run": dockerRun,
  "caddy.sync": caddySync,
  "health.check": healthCheck,
  "acceptance.check": acceptanceCheck,
  "ansible.playbook": ansiblePlaybook,
  provision,
  "repo.scaffold": repoScaffold,
  "release.logs": releaseLogs,
};
