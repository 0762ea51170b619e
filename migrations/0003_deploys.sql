ALTER TYPE "public"."deployment_status" ADD VALUE 'active';--> statement-breakpoint
ALTER TYPE "public"."deployment_status" ADD VALUE 'removed';--> statement-breakpoint
ALTER TABLE "deployments" ADD COLUMN "domain" text;--> statement-breakpoint
ALTER TABLE "deployments" ADD COLUMN "port" integer;--> statement-breakpoint
ALTER TABLE "deployments" ADD COLUMN "kind" text DEFAULT 'build' NOT NULL;--> statement-breakpoint
ALTER TABLE "deployments" ADD COLUMN "source_deployment_id" text;--> statement-breakpoint
ALTER TABLE "deployments" ADD COLUMN "stopped_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "servers" ADD COLUMN "base_domain" text;--> statement-breakpoint
ALTER TABLE "servers" ADD COLUMN "route_generation" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "service_deployments" ADD COLUMN "active_deployment_id" text;--> statement-breakpoint
CREATE UNIQUE INDEX "deployments_port_idx" ON "deployments" USING btree ("server_id","port") WHERE "deployments"."port" IS NOT NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "service_deployments_project_idx" ON "service_deployments" USING btree ("project_id");--> statement-breakpoint
CREATE UNIQUE INDEX "service_deployments_port_idx" ON "service_deployments" USING btree ("server_id","internal_port");--> statement-breakpoint
CREATE UNIQUE INDEX "tasks_one_active_deploy" ON "tasks" USING btree ("project_id") WHERE "tasks"."type" = 'deploy' AND "tasks"."status" IN ('queued', 'running', 'needs_input');