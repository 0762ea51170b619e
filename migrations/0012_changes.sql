CREATE TYPE "public"."change_status" AS ENUM('building', 'open', 'shipped', 'discarded', 'failed');--> statement-breakpoint
CREATE TABLE "changes" (
	"id" text PRIMARY KEY NOT NULL,
	"project_id" text NOT NULL,
	"number" integer NOT NULL,
	"request" text NOT NULL,
	"brief" jsonb,
	"branch" text NOT NULL,
	"status" "change_status" DEFAULT 'building' NOT NULL,
	"task_id" text NOT NULL,
	"pull_request" jsonb,
	"merge_sha" text,
	"deploy_task_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "changes" ADD CONSTRAINT "changes_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "changes_project_number" ON "changes" USING btree ("project_id","number");