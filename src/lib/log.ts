/** Structured JSON logs, one line per record, with secrets redacted. */

export type LogLevel = "debug" | "info" | "warn" | "error";
const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

const SECRET_KEY = /pass(word)?|secret|token|api[-_]?key|authorization|cookie|private|credential|database_url/i;
/** Our own API keys and connection strings with credentials are recognised in free text too. */
const SECRET_VALUE: [RegExp, string][] = [
  [/\bork_[A-Za-z0-9_-]{8,}/g, "[redacted]"],
  [/(\w+:\/\/[^:/\s]+:)[^@\s]+@/g, "$1[redacted]@"],
  [/(Bearer\s+)[A-Za-z0-9._~+/=-]+/gi, "$1[redacted]"],
];

/** Returns a copy of `value` in which secret-looking keys and values are replaced by "[redacted]". */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8) return "[deep]";
  if (typeof value === "string") {
    return SECRET_VALUE.reduce((text, [pattern, replacement]) => text.replace(pattern, replacement), value);
  }
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  if (value instanceof Error) {
    // Query errors carry their bound parameters in the message; those may be key hashes or secrets.
    const message = value.message.replace(/\nparams: [\s\S]*$/, "\nparams: [redacted]");
    const cause = value.cause instanceof Error ? redact(value.cause, depth + 1) : undefined;
    const frames = value.stack?.split("\n").filter((line) => line.trimStart().startsWith("at ")).slice(0, 12);
    return { name: value.name, message: redact(message, depth + 1), ...(cause ? { cause } : {}), frames };
  }
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, SECRET_KEY.test(key) ? "[redacted]" : redact(item, depth + 1)]),
    );
  }
  return value;
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/** Creates a logger that writes JSON lines at or above `minLevel`, each carrying `base` fields. */
export function createLogger(minLevel: string | undefined, base: Record<string, unknown> = {}): Logger {
  const min = levelRank[(minLevel as LogLevel) in levelRank ? (minLevel as LogLevel) : "info"];
  const write = (level: LogLevel, msg: string, fields: Record<string, unknown> = {}) => {
    if (levelRank[level] < min) return;
    const line = JSON.stringify(redact({ level, msg, at: new Date().toISOString(), ...base, ...fields }));
    if (level === "error") console.error(line);
    else if (level === "warn") console.warn(line);
    else console.log(line);
  };
  return {
    debug: (msg, fields) => write("debug", msg, fields),
    info: (msg, fields) => write("info", msg, fields),
    warn: (msg, fields) => write("warn", msg, fields),
    error: (msg, fields) => write("error", msg, fields),
    child: (fields) => createLogger(minLevel, { ...base, ...fields }),
  };
}
