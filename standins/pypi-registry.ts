/**
 * A stand-in for PyPI (pypi.org's simple index and files.pythonhosted.org's files), for tests,
 * `npm run dev` and the demo: the Python projects' containers install their packages from it through
 * the egress proxy, as pip would from PyPI, and nothing leaves this machine.
 *
 * It speaks PEP 503's simple API: `GET /simple/` lists the projects, `GET /simple/<name>/` (the name
 * normalized) links each file with its sha256 in the fragment, and `GET /files/<wheel>` sends it. The
 * packages are the Python distributions installed on this machine (Debian's `/usr/lib/python3/dist-packages`
 * by default: Jinja2 and MarkupSafe come with Ansible), each packed as a pure-Python wheel
 * (`py3-none-any`) from the top-level packages and modules its metadata names; compiled extension
 * modules are left out (MarkupSafe's speedups: it falls back to Python), so what is served imports on
 * any Python 3. Packed with fixed times, so the same files give the same wheel and hashes across restarts.
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { join, relative } from "node:path";
import { type Zippable, zipSync } from "fflate";
import { close, listen } from "./http.ts";

interface Distribution {
  name: string;
  version: string;
  /** The metadata file (METADATA or PKG-INFO), as the wheel's METADATA. */
  metadata: string;
  /** Absolute paths of the files it installs, by their path in the wheel. */
  files: Map<string, string>;
}

interface Wheel {
  file: string;
  bytes: Uint8Array;
  sha256: string;
}

/** What every entry in a packed wheel carries as its time (the earliest a zip can hold). */
const ZIP_TIME = new Date("1980-01-02T00:00:00Z");

export interface PyPiOptions {
  /** site-packages directories to serve from (default: Debian's system one). */
  roots?: string[];
}

/** PEP 503's name normalization: runs of `-`, `_` and `.` become `-`, lower case. */
export function normalizeName(name: string): string {
  return name.replace(/[-_.]+/g, "-").toLowerCase();
}

export class PyPiServer {
  /** Distributions by normalized name, then version. */
  readonly projects = new Map<string, Map<string, Distribution>>();
  private readonly wheels = new Map<string, Wheel>();
  /** Wheels sent, as `name==version`, in order: what a test counts to see a cache at work. */
  readonly downloads: string[] = [];
  private server: Server | null = null;
  url = "";

  constructor(options: PyPiOptions = {}) {
    for (const root of options.roots ?? ["/usr/lib/python3/dist-packages"]) this.scan(root);
  }

  /** The index URL pip is given (PIP_INDEX_URL, the runner's `registries.pypi`). */
  get indexUrl(): string {
    return `${this.url}/simple/`;
  }

  async start(port = 0, host = "127.0.0.1"): Promise<this> {
    const started = await listen((req, res) => new Promise<void>((resolve) => resolve(this.handle(req, res))), (error) => String(error), port, host);
    this.server = started.server;
    this.url = started.url;
    return this;
  }

  async stop(): Promise<void> {
    await close(this.server);
    this.server = null;
  }

  private scan(root: string): void {
    if (!existsSync(root)) return;
    for (const entry of readdirSync(root)) {
      const info = /^(?<name>[A-Za-z0-9._]+?)-(?<version>[0-9][^-]*?)(?:-py[0-9.]+)?\.(?<kind>dist-info|egg-info)$/.exec(entry);
      const { name: dirName = "", version: dirVersion = "", kind = "" } = info?.groups ?? {};
      if (!info || !lstatSync(join(root, entry)).isDirectory()) continue;
      const dir = join(root, entry);
      const metadataFile = join(dir, kind === "dist-info" ? "METADATA" : "PKG-INFO");
      const topLevel = join(dir, "top_level.txt");
      if (!existsSync(metadataFile) || !existsSync(topLevel)) continue;
      const metadata = readFileSync(metadataFile, "utf8");
      const name = /^Name: (.+)$/m.exec(metadata)?.[1]?.trim() ?? dirName;
      const version = /^Version: (.+)$/m.exec(metadata)?.[1]?.trim() ?? dirVersion;
      const files = new Map<string, string>();
      for (const top of readFileSync(topLevel, "utf8").split("\n").map((line) => line.trim()).filter(Boolean)) {
        if (!/^[A-Za-z0-9_]+$/.test(top)) continue;
        const pkg = join(root, top);
        if (existsSync(join(pkg, "__init__.py"))) collect(root, pkg, files);
        else if (existsSync(`${pkg}.py`)) files.set(`${top}.py`, `${pkg}.py`);
      }
      if (files.size === 0) continue;
      const versions = this.projects.get(normalizeName(name)) ?? new Map<string, Distribution>();
      if (!versions.has(version)) versions.set(version, { name, version, metadata, files });
      this.projects.set(normalizeName(name), versions);
    }
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== "GET" && req.method !== "HEAD") return void res.writeHead(405, { "content-type": "text/plain" }).end("method not allowed");
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://pypi").pathname);
    if (path === "/simple/") {
      const links = [...this.projects.keys()].sort().map((name) => `<a href="/simple/${name}/">${name}</a>`);
      return this.page(req, res, "Simple index", links);
    }
    const project = /^\/simple\/(?<name>[^/]+)\/?$/.exec(path)?.groups?.name;
    if (project !== undefined) {
      // pip asks for the normalized name; any other spelling is sent there, as PyPI does.
      const normalized = normalizeName(project);
      if (normalized !== project || !path.endsWith("/")) return void res.writeHead(301, { location: `/simple/${normalized}/` }).end();
      const versions = this.projects.get(normalized);
      if (!versions) return void res.writeHead(404, { "content-type": "text/plain" }).end("Not Found");
      const links = [...versions.values()].map((distribution) => {
        const wheel = this.wheel(distribution);
        return `<a href="/files/${wheel.file}#sha256=${wheel.sha256}">${wheel.file}</a>`;
      });
      return this.page(req, res, `Links for ${normalized}`, links);
    }
    const file = /^\/files\/(?<file>[^/]+\.whl)$/.exec(path)?.groups?.file;
    const distribution = file ? [...this.projects.values()].flatMap((versions) => [...versions.values()]).find((candidate) => wheelName(candidate) === file) : undefined;
    if (!distribution) return void res.writeHead(404, { "content-type": "text/plain" }).end("Not Found");
    const wheel = this.wheel(distribution);
    this.downloads.push(`${distribution.name}==${distribution.version}`);
    // As PyPI serves its files: they never change (pip's HTTP cache keeps them on that word).
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": wheel.bytes.length, "cache-control": "max-age=365000000, immutable, public" }).end(req.method === "HEAD" ? undefined : wheel.bytes);
  }

  private page(req: IncomingMessage, res: ServerResponse, title: string, links: string[]): void {
    const html = `<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0"><title>${title}</title></head><body>\n${links.join("<br>\n")}\n</body></html>\n`;
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "max-age=600" }).end(req.method === "HEAD" ? undefined : html);
  }

  private wheel(distribution: Distribution): Wheel {
    const file = wheelName(distribution);
    const cached = this.wheels.get(file);
    if (cached) return cached;
    const infoDir = `${file.split("-").slice(0, 2).join("-")}.dist-info`;
    const entries = new Map<string, Uint8Array>();
    for (const [path, source] of [...distribution.files].sort(([a], [b]) => a.localeCompare(b))) entries.set(path, readFileSync(source));
    entries.set(`${infoDir}/METADATA`, Buffer.from(distribution.metadata));
    entries.set(`${infoDir}/WHEEL`, Buffer.from("Wheel-Version: 1.0\nGenerator: orchestrator-pypi-standin\nRoot-Is-Purelib: true\nTag: py3-none-any\n"));
    // RECORD names every file with its hash and size (pip checks what it installs against it), itself without.
    const record = [...entries].map(([path, bytes]) => `${path},sha256=${createHash("sha256").update(bytes).digest("base64url")},${bytes.length}`);
    entries.set(`${infoDir}/RECORD`, Buffer.from(`${[...record, `${infoDir}/RECORD,,`].join("\n")}\n`));
    const zippable: Zippable = {};
    for (const [path, bytes] of entries) zippable[path] = [bytes, { mtime: ZIP_TIME }];
    const bytes = zipSync(zippable, { level: 6 });
    const wheel = { file, bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
    this.wheels.set(file, wheel);
    return wheel;
  }
}

/** A wheel's file name (PEP 427: the name with `-` as `_`). */
function wheelName(distribution: Distribution): string {
  return `${distribution.name.replace(/[-_.]+/g, "_")}-${distribution.version.replace(/-/g, "_")}-py3-none-any.whl`;
}

/** A package's Python files and data, without bytecode or compiled extension modules, by their path in the wheel. */
function collect(root: string, dir: string, files: Map<string, string>): void {
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    const stat = lstatSync(path);
    if (stat.isDirectory()) {
      if (entry !== "__pycache__") collect(root, path, files);
    } else if (stat.isFile() && !/\.(so|pyc|pyd)$/.test(entry) && !/\.so\./.test(entry)) {
      files.set(relative(root, path), path);
    }
  }
}
