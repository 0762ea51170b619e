/**
 * A stand-in for the npm registry (registry.npmjs.org), for tests, `npm run dev` and the demo: the
 * projects' containers install their dependencies from it through the egress proxy, as they would
 * from the real registry, and nothing leaves this machine.
 *
 * It serves the packages installed in this repository's node_modules (every version found, nested
 * ones included): a packument per name (`GET /<name>`, `GET /@scope%2fname`) and a tarball per version
 * (`GET /<name>/-/<file>.tgz`), packed from the installed directory the way `npm pack` lays one out
 * (`package/…`, fixed times, so the same files give the same bytes and lockfile integrities hold
 * across restarts). A name it does not hold is a 404, as on the real registry.
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import { pack } from "tar-stream";
import { close, listen, sendJson } from "./http.ts";

interface Installed {
  dir: string;
  manifest: Record<string, unknown>;
}

interface Tarball {
  bytes: Buffer;
  integrity: string;
  shasum: string;
}

/** What npm's own tarballs carry as every entry's time (1985-10-26T08:15:00Z). */
const NPM_PACK_TIME = new Date(499162500000);

/** The package.json fields a registry's version document carries (what npm reads before it downloads). */
const VERSION_FIELDS = ["name", "version", "description", "main", "type", "exports", "bin", "engines", "os", "cpu", "libc", "dependencies", "peerDependencies", "peerDependenciesMeta", "bundleDependencies", "license", "deprecated"];

export interface NpmRegistryOptions {
  /** node_modules directories to serve from (default: this repository's). */
  roots?: string[];
}

export class NpmRegistryServer {
  readonly packages = new Map<string, Map<string, Installed>>();
  private readonly tarballs = new Map<string, Tarball>();
  /** Tarballs sent, as `name@version`, in order: what a test counts to see a cache at work. */
  readonly downloads: string[] = [];
  private server: Server | null = null;
  url = "";

  constructor(options: NpmRegistryOptions = {}) {
    for (const root of options.roots ?? [join(import.meta.dirname, "..", "node_modules")]) this.scan(root);
  }

  async start(port = 0, host = "127.0.0.1"): Promise<this> {
    const started = await listen((req, res) => this.handle(req, res), (error) => ({ error: String(error) }), port, host);
    this.server = started.server;
    this.url = started.url;
    return this;
  }

  async stop(): Promise<void> {
    await close(this.server);
    this.server = null;
  }

  /**
   * Packs, ahead of any request, every version of the packages named and of all they depend on: a real
   * registry has its tarballs packed, so a benchmark's first install should not wait for the packing.
   * Returns how many tarballs that is.
   */
  async warm(names: string[]): Promise<number> {
    const seen = new Set<string>();
    const queue = [...names];
    let packed = 0;
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const versions = this.packages.get(name);
      if (seen.has(name) || !versions) continue;
      seen.add(name);
      for (const [version, installed] of versions) {
        await this.tarball(name, version);
        packed += 1;
        for (const field of ["dependencies", "optionalDependencies", "peerDependencies"]) queue.push(...Object.keys((installed.manifest[field] ?? {})));
      }
    }
    return packed;
  }

  private scan(modules: string): void {
    if (!existsSync(modules)) return;
    for (const entry of readdirSync(modules)) {
      if (entry.startsWith(".")) continue;
      if (entry.startsWith("@")) {
        for (const scoped of readdirSync(join(modules, entry))) this.add(join(modules, entry, scoped));
      } else {
        this.add(join(modules, entry));
      }
    }
  }

  private add(dir: string): void {
    // Workspace links (this repository's own packages) are not published packages.
    if (lstatSync(dir).isSymbolicLink() || !existsSync(join(dir, "package.json"))) return;
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Record<string, unknown>;
    if (typeof manifest.name === "string" && typeof manifest.version === "string" && !manifest.private) {
      const versions = this.packages.get(manifest.name) ?? new Map<string, Installed>();
      if (!versions.has(manifest.version)) versions.set(manifest.version, { dir, manifest });
      this.packages.set(manifest.name, versions);
    }
    this.scan(join(dir, "node_modules"));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://registry").pathname).slice(1);
    if (req.method !== "GET" && req.method !== "HEAD") return sendJson(res, 405, { error: "method not allowed" });
    const tarball = /^(?<name>(?:@[^/]+\/)?[^/@]+)\/-\/(?<file>[^/]+\.tgz)$/.exec(path);
    if (tarball?.groups) {
      const { name = "", file = "" } = tarball.groups;
      const version = [...(this.packages.get(name)?.keys() ?? [])].find((candidate) => file === `${name.split("/").pop()}-${candidate}.tgz`);
      if (!version) return sendJson(res, 404, { error: "Not found" });
      const packed = await this.tarball(name, version);
      this.downloads.push(`${name}@${version}`);
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": packed.bytes.length }).end(req.method === "HEAD" ? undefined : packed.bytes);
      return;
    }
    const versions = this.packages.get(path);
    if (!versions) return sendJson(res, 404, { error: "Not found" });
    // As the real registry says of its packuments: fresh for five minutes.
    res.setHeader("cache-control", "public, max-age=300");
    sendJson(res, 200, await this.packument(path, versions, `http://${req.headers.host ?? "registry"}`));
  }

  private async packument(name: string, versions: Map<string, Installed>, origin: string): Promise<Record<string, unknown>> {
    const documents: Record<string, unknown> = {};
    for (const [version, installed] of versions) {
      const packed = await this.tarball(name, version);
      const document: Record<string, unknown> = {};
      for (const field of VERSION_FIELDS) if (installed.manifest[field] !== undefined) document[field] = installed.manifest[field];
      // Optional dependencies this machine never installed (other platforms' binaries) are left out:
      // a registry that listed them would have to serve them.
      const optional = (installed.manifest.optionalDependencies ?? {}) as Record<string, string>;
      const held = Object.fromEntries(Object.entries(optional).filter(([dependency]) => this.packages.has(dependency)));
      if (Object.keys(held).length) document.optionalDependencies = held;
      const scripts = (installed.manifest.scripts ?? {}) as Record<string, string>;
      if (scripts.preinstall || scripts.install || scripts.postinstall) document.hasInstallScript = true;
      document.dist = { tarball: `${origin}/${name}/-/${name.split("/").pop()}-${version}.tgz`, integrity: packed.integrity, shasum: packed.shasum };
      documents[version] = document;
    }
    const latest = [...versions.keys()].sort(compareVersions).at(-1);
    return { name, "dist-tags": { latest }, versions: documents };
  }

  private async tarball(name: string, version: string): Promise<Tarball> {
    const key = `${name}@${version}`;
    const cached = this.tarballs.get(key);
    if (cached) return cached;
    const installed = this.packages.get(name)?.get(version);
    if (!installed) throw new Error(`no ${key}`);
    const bytes = gzipSync(await packDirectory(installed.dir));
    const packed = {
      bytes,
      integrity: `sha512-${createHash("sha512").update(bytes).digest("base64")}`,
      shasum: createHash("sha1").update(bytes).digest("hex"),
    };
    this.tarballs.set(key, packed);
    return packed;
  }
}

/** A package's installed files (not its own node_modules) as a tar under `package/`, sorted, with npm's fixed times. */
async function packDirectory(dir: string): Promise<Buffer> {
  const files: string[] = [];
  const walk = (current: string): void => {
    for (const entry of readdirSync(current).sort()) {
      const path = join(current, entry);
      if (current === dir && entry === "node_modules") continue;
      const stat = lstatSync(path);
      if (stat.isDirectory()) walk(path);
      else if (stat.isFile()) files.push(path);
    }
  };
  walk(dir);
  const tar = pack();
  const chunks: Buffer[] = [];
  tar.on("data", (chunk: unknown) => chunks.push(chunk as Buffer));
  const ended = new Promise<void>((resolve, reject) => {
    tar.on("end", resolve);
    tar.on("error", reject);
  });
  for (const path of files) {
    const mode = lstatSync(path).mode & 0o111 ? 0o755 : 0o644;
    tar.entry({ name: `package/${relative(dir, path)}`, mode, mtime: NPM_PACK_TIME, uid: 0, gid: 0 }, readFileSync(path));
  }
  tar.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** Semver order of plain `x.y.z[-pre]` versions (enough to name the latest). */
function compareVersions(a: string, b: string): number {
  const parse = (version: string) => {
    const [core = "", pre] = version.split("-", 2);
    return { parts: core.split(".").map(Number), pre };
  };
  const left = parse(a);
  const right = parse(b);
  for (let index = 0; index < 3; index += 1) {
    const difference = (left.parts[index] ?? 0) - (right.parts[index] ?? 0);
    if (difference) return difference;
  }
  if (left.pre === right.pre) return 0;
  if (left.pre === undefined) return 1;
  if (right.pre === undefined) return -1;
  return left.pre < right.pre ? -1 : 1;
}
