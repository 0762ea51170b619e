/**
 * git on the runner's own host, for jobs that prepare repositories. The token goes to git as an HTTP
 * header through GIT_CONFIG_* environment variables: never in a URL, an argument or a config file.
 */
import { execFile } from "node:child_process";

export interface GitResult {
  stdout: string;
  stderr: string;
}

export class GitError extends Error {
  readonly stderr: string;
  constructor(message: string, stderr: string) {
    super(message);
    this.stderr = stderr;
  }
}

/** The environment that authenticates git to an HTTP(S) host with `token`, as GitHub takes it. */
export function gitAuthEnv(token: string): Record<string, string> {
  return {
    GIT_TERMINAL_PROMPT: "0",
    GIT_CONFIG_COUNT: "1",
    GIT_CONFIG_KEY_0: "http.extraHeader",
    GIT_CONFIG_VALUE_0: `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString("base64")}`,
  };
}

export function git(args: string[], options: { cwd?: string; env?: Record<string, string>; signal?: AbortSignal; timeoutMs?: number } = {}): Promise<GitResult> {
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      {
        cwd: options.cwd,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: options.cwd ?? "/tmp", LANG: "C.UTF-8", ...options.env },
        signal: options.signal,
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (!error) return resolve({ stdout, stderr });
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return reject(new GitError("git is not installed on this server (Debian: apt install git; provision.yml does)", ""));
        reject(new GitError(`git ${args[0]} failed: ${stderr.trim().split("\n").at(-1) ?? error.message}`, stderr));
      },
    );
  });
}
