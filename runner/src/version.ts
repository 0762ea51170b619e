export const RUNNER_VERSION = "0.2.0";
