// Serves the app on PORT (8000 by default). Node runs the TypeScript as it is (type stripping): no build step.
import { serve } from "@hono/node-server";
import { app } from "./app.ts";

const port = Number(process.env.PORT ?? 8000);
const server = serve({ fetch: app.fetch, port, hostname: "0.0.0.0" }, (info) => {
  console.log(`{{project_name}} listening on port ${info.port}`);
});

// A release is stopped with SIGTERM: finish the requests in flight, then exit.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
