// {{project_name}}: an HTTP service on Hono. Add a route with app.get / app.post; what the service is
// for is in README.md. The app is a plain fetch handler: the tests call it with app.request, no server.
import { Hono } from "hono";

export const app = new Hono();

app.get("/healthz", (c) => c.json({ ok: true }));
