/** Docker labels on everything the runner creates for a job, so a restarted runner can find and remove it. */
export const JOB_LABEL = "orchestrator.job";
export const MANAGED_LABEL = "orchestrator.managed";
