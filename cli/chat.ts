/**
 * The Product Owner in the terminal: `orchestrator new "<what you want>"` and `orchestrator chat`,
 * over the chat WebSocket (`GET /chat/ws`, the contract in src/shared/chat.ts) signed in with the
 * CLI's API key.
 */
import { createInterface, clearLine, cursorTo, type Interface } from "node:readline";
import WebSocket from "ws";
import { CHAT_TEXT_LIMIT, type ChatEntry, type ClientMessage, SERVER_MESSAGE_TYPES, ServerMessage, type SessionState } from "../src/shared/chat.ts";
import { describeNetworkError, responseError } from "./api.ts";
import { CliError, type CliConfig } from "./config.ts";

/** How long one turn of the agent may take before the CLI gives up on it. */
export const TURN_TIMEOUT_MS = 10 * 60_000;
/** How long to wait for the conversation's history after connecting. */
const CONNECT_TIMEOUT_MS = 30_000;
/**
 * A turn that showed no sign of being ours (no echo of the message, no closed question) is taken as
 * over when the agent stays idle this long after it: a secret typed in the chat is never echoed.
 */
const SETTLE_MS = 2_000;
/** Entries of the history `chat` shows on connect. */
const HISTORY_SHOWN = 20;

export interface TurnResult {
  /** The agent refused what was sent (a malformed message, a question answered already). */
  error?: { code: string; message: string };
}

interface TurnWatch {
  sent: ClientMessage;
  /** Our message echoed, or our question closed: the turn running now is ours. */
  ours: boolean;
  /** A turn started (PROCESSING) since it was sent. */
  started: boolean;
  settle?: ReturnType<typeof setTimeout>;
  done: (result: TurnResult) => void;
  fail: (error: CliError) => void;
}

const stopped = () => new CliError("stopped", 130);

/** One connection to the person's Product Owner: the conversation as it stands, and turns on it. */
export class ChatSession {
  state: SessionState = "IDLE";
  /** Every entry seen, latest version, in the order they first came. */
  readonly entries = new Map<string, ChatEntry>();
  /** What the agent sent on connect. */
  history: ChatEntry[] = [];
  onEntry: (entry: ChatEntry, previous: ChatEntry | undefined) => void = () => undefined;
  onError: (code: string, message: string) => void = () => undefined;
  /** The connection is gone (outside a turn too). */
  onLost: (error: CliError) => void = () => undefined;

  private readonly socket: WebSocket;
  private readonly signal: AbortSignal;
  private watch: TurnWatch | null = null;
  private closed: CliError | null = null;

  private constructor(socket: WebSocket, signal: AbortSignal) {
    this.socket = socket;
    this.signal = signal;
  }

  /** Connects and resolves once the history is in; a refusal (bad key…) or an unreachable server is a CliError. */
  static open(config: CliConfig, signal: AbortSignal): Promise<ChatSession> {
    const url = `${config.url.replace(/^http/i, "ws")}/chat/ws`;
    const socket = new WebSocket(url, { headers: { authorization: `Bearer ${config.apiKey}` }, handshakeTimeout: CONNECT_TIMEOUT_MS });
    const session = new ChatSession(socket, signal);
    return new Promise<ChatSession>((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => fail(new CliError(`no answer from the chat at ${url} within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
      const onAbort = () => fail(stopped());
      function fail(error: CliError) {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        if (ready) return session.lost(error);
        ready = true;
        socket.removeAllListeners("message");
        socket.terminate();
        reject(error);
      }
      signal.addEventListener("abort", onAbort, { once: true });
      // Refused before the upgrade: the server's JSON error, as for any other request.
      socket.on("unexpected-response", (_request, response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          void responseError(new Response(body, { status: response.statusCode ?? 500 }), "chat").then(fail);
        });
        response.on("error", (error) => fail(new CliError(describeNetworkError(config, error))));
      });
      socket.on("error", (error) => fail(ready ? new CliError(`the chat connection failed: ${error.message}`) : new CliError(describeNetworkError(config, error))));
      socket.on("close", (code, reason) => {
        const why = reason.toString() || (code === 1006 ? "dropped" : `code ${code}`);
        fail(new CliError(ready ? `the chat connection closed (${why})` : `the chat closed the connection before it began (${why})`));
      });
      socket.on("message", (data: Buffer) => {
        const frame = session.frame(data.toString("utf8"));
        if (frame?.type !== "chat:history" || ready) return;
        ready = true;
        clearTimeout(timer);
        resolve(session);
      });
    });
  }

  /** Sends a message or a choice and resolves when the agent's turn for it is over. */
  turn(message: ClientMessage, timeoutMs = TURN_TIMEOUT_MS): Promise<TurnResult> {
    if (this.closed) return Promise.reject(this.closed);
    if (this.signal.aborted) return Promise.reject(stopped());
    return new Promise<TurnResult>((resolve, reject) => {
      const timer = setTimeout(() => watch.fail(new CliError(`the Product Owner did not finish its turn within ${Math.round(timeoutMs / 60_000)} minutes`)), timeoutMs);
      const onAbort = () => watch.fail(stopped());
      const end = () => {
        clearTimeout(timer);
        clearTimeout(watch.settle);
        this.signal.removeEventListener("abort", onAbort);
        if (this.watch === watch) this.watch = null;
      };
      const watch: TurnWatch = {
        sent: message,
        ours: false,
        started: false,
        done: (result) => {
          end();
          resolve(result);
        },
        fail: (error) => {
          end();
          reject(error);
        },
      };
      this.signal.addEventListener("abort", onAbort, { once: true });
      this.watch = watch;
      this.socket.send(JSON.stringify(message));
    });
  }

  /** The latest question whose buttons are still there, if any (optionally only among `among`). */
  openQuestion(among?: (entry: ChatEntry) => boolean): ChatEntry | undefined {
    let found: ChatEntry | undefined;
    for (const entry of this.entries.values()) if (entry.actionId && entry.buttons?.length && (!among || among(entry))) found = entry;
    return found;
  }

  close(): void {
    this.closed ??= new CliError("the chat connection is closed");
    this.socket.removeAllListeners();
    this.socket.on("error", () => undefined);
    this.socket.close(1000, "bye");
  }

  private lost(error: CliError): void {
    if (this.closed) return;
    this.closed = error;
    this.watch?.fail(error);
    this.onLost(error);
  }

  /** Reads one frame from the server; frames of other types (the agents SDK's own) are ignored. */
  private frame(raw: string): ServerMessage | undefined {
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      return undefined;
    }
    const type = json && typeof json === "object" && "type" in json ? String(json.type) : "";
    if (!SERVER_MESSAGE_TYPES.has(type)) return undefined;
    const parsed = ServerMessage.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      process.stderr.write(`orchestrator: ignored a ${type} frame this CLI cannot read (${issue ? `${issue.path.join(".")}: ${issue.message}` : "unreadable"}); is the CLI older than the server?\n`);
      return undefined;
    }
    const frame: ServerMessage = parsed.data;
    const watch = this.watch;
    switch (frame.type) {
      case "chat:history":
        this.state = frame.state;
        this.history = frame.entries;
        for (const entry of frame.entries) this.entries.set(entry.id, entry);
        break;
      case "chat:entry": {
        const previous = this.entries.get(frame.entry.id);
        this.entries.set(frame.entry.id, frame.entry);
        if (watch && !previous && watch.sent.type === "chat:message" && frame.entry.from === "user" && frame.entry.text.trim() === watch.sent.text.trim()) watch.ours = true;
        if (watch && watch.sent.type === "chat:choice" && frame.entry.actionId === watch.sent.actionId && !frame.entry.buttons?.length) watch.ours = true;
        this.onEntry(frame.entry, previous);
        break;
      }
      case "chat:state":
        this.state = frame.state;
        if (!watch) break;
        if (frame.state === "PROCESSING") {
          watch.started = true;
          clearTimeout(watch.settle);
          watch.settle = undefined;
        } else if (watch.ours) {
          watch.done({});
        } else if (watch.started) {
          clearTimeout(watch.settle);
          watch.settle = setTimeout(() => watch.done({}), SETTLE_MS);
        }
        break;
      case "chat:error":
        this.onError(frame.code, frame.message);
        // A refused message is told to its connection at once; a stale choice is told to every
        // connection of the chat, so it ends only a turn that sent a choice.
        if (watch && (frame.code === "invalid_message" || watch.sent.type === "chat:choice")) watch.done({ error: { code: frame.code, message: frame.message } });
        break;
    }
    return frame;
  }
}

/** Lines from stdin on demand (queued as they come), with a `you> ` style prompt on a terminal. */
export class LineReader {
  readonly interactive: boolean;
  private readonly rl: Interface;
  private readonly queued: string[] = [];
  private waiting: { resolve: (line: string | null) => void; reject: (error: CliError) => void } | null = null;
  private ended = false;
  private prompting = false;
  private failed: CliError | null = null;

  constructor(signal: AbortSignal, onInterrupt: () => void) {
    this.interactive = Boolean(process.stdin.isTTY && process.stdout.isTTY);
    this.rl = this.interactive ? createInterface({ input: process.stdin, output: process.stdout, terminal: true }) : createInterface({ input: process.stdin, terminal: false });
    this.rl.on("line", (line) => {
      const waiting = this.waiting;
      if (!waiting) return void this.queued.push(line);
      this.waiting = null;
      this.prompting = false;
      waiting.resolve(line);
    });
    this.rl.on("close", () => {
      // Ctrl-D at the prompt: the shell's prompt goes on a line of its own.
      if (this.prompting) process.stdout.write("\n");
      this.ended = true;
      this.prompting = false;
      this.waiting?.resolve(null);
      this.waiting = null;
    });
    // Ctrl-C on a terminal reaches readline, not the process.
    this.rl.on("SIGINT", () => {
      if (this.prompting) process.stdout.write("\n");
      onInterrupt();
    });
    signal.addEventListener("abort", () => this.fail(stopped()));
  }

  /** Ends reading with an error: the read waiting now and any later one reject with it. */
  fail(error: CliError): void {
    this.failed ??= error;
    this.waiting?.reject(error);
    this.waiting = null;
    this.prompting = false;
  }

  /** The next line, or null at the end of input. */
  read(prompt: string): Promise<string | null> {
    if (this.failed) return Promise.reject(this.failed);
    const line = this.queued.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.ended) return Promise.resolve(null);
    if (this.interactive) {
      this.rl.setPrompt(prompt);
      this.rl.prompt();
      this.prompting = true;
    }
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** Prints without garbling a prompt the person may be typing at (an entry that comes in meanwhile). */
  write(text: string): void {
    if (!this.prompting) return void process.stdout.write(text);
    clearLine(process.stdout, 0);
    cursorTo(process.stdout, 0);
    process.stdout.write(text);
    this.rl.prompt(true);
  }

  close(): void {
    this.rl.close();
  }
}

/** Prints entries as `po> …` (more lines indented), each once; a later version only for what it adds. */
export class EntryPrinter {
  private readonly printed = new Map<string, string>();
  private readonly echoes: string[] = [];
  private readonly dim: (text: string) => string;
  write: (text: string) => void = (text) => void process.stdout.write(text);

  constructor() {
    const color = Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;
    this.dim = color ? (text) => `\x1b[2m${text}\x1b[22m` : (text) => text;
  }

  /** Entries not to print (the history `new` does not show). */
  seen(entries: Iterable<ChatEntry>): void {
    for (const entry of entries) this.printed.set(entry.id, entry.text);
  }

  /** The person's own message, about to be sent: its echo from the server is not printed again. */
  expectEcho(text: string): void {
    this.echoes.push(text.trim());
  }

  /** A line in the conversation the CLI shows itself (a piped line, the choice it sent). */
  line(text: string): void {
    this.write(`${text}\n`);
  }

  entry(entry: ChatEntry): void {
    const before = this.printed.get(entry.id);
    if (before === entry.text) return;
    this.printed.set(entry.id, entry.text);
    const prefix = entry.from === "agent" ? "po> " : "you> ";
    const indent = " ".repeat(prefix.length);
    if (before !== undefined) {
      // An update: a closed question gets what was chosen under it ("✔ Confirmed").
      const added = entry.text.startsWith(before) ? entry.text.slice(before.length).replace(/^\n+/, "") : "";
      if (added) this.write(`${indented(added, indent, indent)}\n`);
      else if (!entry.text.startsWith(before)) this.write(`${indented(entry.text, `${prefix}(edited) `, indent)}\n`);
      return;
    }
    if (entry.from === "user") {
      const echo = this.echoes.indexOf(entry.text.trim());
      if (echo >= 0) return void this.echoes.splice(echo, 1);
      return this.write(`${this.dim(indented(entry.text, prefix, indent))}\n`);
    }
    const lines = [indented(entry.text, prefix, indent)];
    if (entry.buttons?.length) lines.push(`${indent}${entry.buttons.map((button, i) => `${i + 1}) ${button.label}`).join("   ")}`);
    if (entry.taskLink) lines.push(`${indent}Watch live: ${entry.taskLink}`);
    this.write(`${lines.join("\n")}\n`);
  }
}

function indented(text: string, first: string, rest: string): string {
  return text
    .split("\n")
    .map((line, i) => (i === 0 ? first : rest) + line)
    .join("\n");
}

/** The choice a typed answer means: its number, or a button's choice or label (case and emoji aside). */
export function choiceFor(question: ChatEntry, answer: string): string | undefined {
  const buttons = question.buttons ?? [];
  const text = answer.trim().toLowerCase();
  if (/^\d+$/.test(text)) return buttons[Number(text) - 1]?.choice;
  const bare = (value: string) => value.toLowerCase().replace(/[^\p{L}\p{N} -]+/gu, "").trim();
  return buttons.find((button) => button.choice.toLowerCase() === text || button.label.toLowerCase() === text || bare(button.label) === bare(text))?.choice;
}

const choicesHint = (question: ChatEntry) => {
  const buttons = question.buttons ?? [];
  return `${buttons.length === 1 ? "1" : `1-${buttons.length}`} or ${buttons.map((button) => button.choice).join("/")}`;
};

/** Both commands' wiring: a stop signal from the caller or Ctrl-C, a session, a printer. */
async function connect(config: CliConfig, signal: AbortSignal | undefined) {
  const stop = new AbortController();
  if (signal?.aborted) stop.abort();
  signal?.addEventListener("abort", () => stop.abort(), { once: true });
  const session = await ChatSession.open(config, stop.signal);
  const printer = new EntryPrinter();
  session.onEntry = (entry) => printer.entry(entry);
  return { session, printer, stop };
}

export interface NewOptions {
  /** Answer "yes" to the agent's confirmations without asking. */
  yes?: boolean;
  /** Follows a task the conversation started to its end; resolves with the exit code. */
  follow?: (taskId: string) => Promise<number>;
  signal?: AbortSignal;
}

/**
 * `orchestrator new`: one message to the Product Owner, its replies printed until its turn is over,
 * its questions answered from the terminal (or with --yes), and the task it started followed.
 */
export async function newProduct(config: CliConfig, text: string, options: NewOptions = {}): Promise<number> {
  const { session, printer, stop } = await connect(config, options.signal);
  let reader: LineReader | undefined;
  try {
    printer.seen(session.history);
    printer.write = (line) => void (reader ? reader.write(line) : process.stdout.write(line));
    const before = new Set(session.history.map((entry) => entry.id));
    let task: { taskId: string; taskLink: string } | undefined;
    session.onEntry = (entry) => {
      printer.entry(entry);
      if (entry.from === "agent" && entry.taskId && entry.taskLink) task = { taskId: entry.taskId, taskLink: entry.taskLink };
    };
    session.onError = (_code, message) => process.stderr.write(`orchestrator: the Product Owner refused it: ${message}\n`);

    printer.expectEcho(text);
    let result = await session.turn({ type: "chat:message", text });
    if (result.error) return 3;
    // Its questions, as long as it asks them (a confirmation, then perhaps another).
    for (let asked = 0; asked < 10; asked++) {
      const question = session.openQuestion((entry) => !before.has(entry.id));
      if (!question?.actionId) break;
      const yes = options.yes ? question.buttons?.find((button) => button.choice === "yes") : undefined;
      let choice = yes?.choice;
      if (choice) {
        printer.line(`    → ${choice} (--yes)`);
      } else {
        reader ??= new LineReader(stop.signal, () => stop.abort());
        session.onLost = (error) => reader?.fail(error);
        while (!choice) {
          const answer = await reader.read(`answer ${choicesHint(question)}: `);
          if (answer === null) {
            throw new CliError(`no answer to "${question.text.split("\n")[0] ?? ""}" (input ended); it stays open: answer it with \`orchestrator chat\`, or run again with --yes`);
          }
          choice = choiceFor(question, answer);
          if (!choice) process.stderr.write(`orchestrator: "${answer.trim()}" is none of the choices; answer ${choicesHint(question)}\n`);
          else if (!reader.interactive) printer.line(`    → ${choice}`);
        }
      }
      result = await session.turn({ type: "chat:choice", actionId: question.actionId, choice });
      if (result.error) return 3;
    }
    if (!task) {
      if (!options.follow) return 0;
      process.stderr.write("orchestrator: no task was started, so there is nothing to follow\n");
      return 3;
    }
    if (!options.follow) return 0;
    session.close();
    process.stderr.write(`following ${task.taskId}\n`);
    return await options.follow(task.taskId);
  } finally {
    reader?.close();
    session.close();
  }
}

/**
 * `orchestrator chat`: the conversation so far, then a `you> ` prompt; each line goes to the agent
 * (or answers its open question: `1`, `2` or the choice) and its replies are printed before the
 * next. With piped input, the lines are taken one turn at a time; the end of input ends the chat.
 */
export async function chatRepl(config: CliConfig, options: { signal?: AbortSignal } = {}): Promise<number> {
  const { session, printer, stop } = await connect(config, options.signal);
  const reader = new LineReader(stop.signal, () => stop.abort());
  try {
    printer.write = (text) => reader.write(text);
    session.onError = (_code, message) => reader.write(`orchestrator: ${message}\n`);
    session.onLost = (error) => reader.fail(error);
    const shown = session.history.slice(-HISTORY_SHOWN);
    printer.seen(session.history.slice(0, session.history.length - shown.length));
    if (session.history.length > shown.length) printer.line(`… ${session.history.length - shown.length} earlier messages`);
    for (const entry of shown) printer.entry(session.entries.get(entry.id) ?? entry);
    if (reader.interactive) process.stderr.write(session.history.length ? "(/quit or Ctrl-D to leave)\n" : "Tell the Product Owner what you want built. (/quit or Ctrl-D to leave)\n");

    for (;;) {
      const line = await reader.read("you> ");
      if (line === null) return 0;
      const text = line.trim();
      if (!text) continue;
      if (text === "/quit" || text === "/exit") return 0;
      if (!reader.interactive) printer.line(`you> ${text}`);
      const question = session.openQuestion();
      const choice = question ? choiceFor(question, text) : undefined;
      if (question?.actionId && choice) {
        await session.turn({ type: "chat:choice", actionId: question.actionId, choice });
        continue;
      }
      if (text.length > CHAT_TEXT_LIMIT) {
        reader.write(`orchestrator: that message is ${text.length} characters; the chat takes up to ${CHAT_TEXT_LIMIT}\n`);
        continue;
      }
      printer.expectEcho(text);
      await session.turn({ type: "chat:message", text });
    }
  } finally {
    reader.close();
    session.close();
  }
}
