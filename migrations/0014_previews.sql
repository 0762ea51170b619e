ALTER TABLE "changes" ADD COLUMN "preview_task_id" text;--> statement-breakpoint
ALTER TABLE "changes" ADD COLUMN "preview_url" text;--> statement-breakpoint
ALTER TABLE "changes" ADD COLUMN "preview_deployment_id" text;--> statement-breakpoint
ALTER TABLE "deployments" ADD COLUMN "preview" integer;