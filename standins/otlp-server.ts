/**
 * An OTLP/HTTP trace receiver for tests and local runs: `POST /v1/traces` with the JSON encoding of
 * ExportTraceServiceRequest (what @opentelemetry/exporter-trace-otlp-http sends), as an OpenTelemetry
 * Collector, Grafana Tempo or Honeycomb takes it. It keeps every span it is sent, flattened with its
 * resource's attributes, and answers as a collector does (`{"partialSuccess":{}}`).
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { close, listen, readBody, sendJson } from "./http.ts";

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
type KeyValue = { key: string; value: AnyValue };
/** A span as OTLP/JSON encodes it (nanosecond times may come as strings or numbers). */
type WireSpan = { traceId?: string; spanId?: string; parentSpanId?: string; name?: string; attributes?: KeyValue[]; status?: { code?: number; message?: string }; startTimeUnixNano?: string | number; endTimeUnixNano?: string | number };

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  attributes: Record<string, string | number | boolean>;
  resource: Record<string, string | number | boolean>;
  status: { code?: number; message?: string };
  startTimeUnixNano: string;
  endTimeUnixNano: string;
}

/** Trace and span ids: hex in OTLP/JSON, but some encoders send base64. */
function hexId(value: unknown): string {
  if (typeof value !== "string" || value === "") return "";
  if (/^[0-9a-f]+$/i.test(value) && (value.length === 32 || value.length === 16)) return value.toLowerCase();
  return Buffer.from(value, "base64").toString("hex");
}

function attributesOf(list: KeyValue[] | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    const v = value.stringValue ?? (value.intValue !== undefined ? Number(value.intValue) : undefined) ?? value.boolValue ?? value.doubleValue;
    if (v !== undefined) out[key] = v;
  }
  return out;
}

export class OtlpServer {
  readonly spans: ReceivedSpan[] = [];
  /** Export requests received (including ones that held no spans). */
  exports = 0;
  private server: Server | null = null;
  url = "";

  get tracesUrl(): string {
    return `${this.url}/v1/traces`;
  }

  async start(port = 0, host = "127.0.0.1"): Promise<void> {
    const { server, url } = await listen((req, res) => this.handle(req, res), (error) => ({ code: 13, message: String(error) }), port, host);
    this.server = server;
    this.url = url;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    await close(server);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://otlp").pathname;
    if (req.method !== "POST" || path !== "/v1/traces") return sendJson(res, 404, { code: 5, message: `no route ${req.method} ${path}` });
    if (!/application\/json/i.test(req.headers["content-type"] ?? "")) return sendJson(res, 415, { code: 3, message: "this receiver takes OTLP/JSON only (content-type: application/json)" });
    const body = JSON.parse(await readBody(req)) as { resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: WireSpan[] }[] }[] };
    this.exports++;
    for (const resourceSpans of body.resourceSpans ?? []) {
      const resource = attributesOf(resourceSpans.resource?.attributes);
      for (const scope of resourceSpans.scopeSpans ?? []) {
        for (const span of scope.spans ?? []) {
          this.spans.push({
            traceId: hexId(span.traceId),
            spanId: hexId(span.spanId),
            parentSpanId: hexId(span.parentSpanId),
            name: span.name ?? "",
            attributes: attributesOf(span.attributes),
            resource,
            status: span.status ?? {},
            startTimeUnixNano: String(span.startTimeUnixNano ?? ""),
            endTimeUnixNano: String(span.endTimeUnixNano ?? ""),
          });
        }
      }
    }
    sendJson(res, 200, { partialSuccess: {} });
  }
}
