CREATE TYPE "public"."checkpoint_kind" AS ENUM('build', 'change', 'undo');--> statement-breakpoint
CREATE TABLE "checkpoints" (
	"id" text PRIMARY KEY NOT NULL,
	"project_id" text NOT NULL,
	"number" integer NOT NULL,
	"kind" "checkpoint_kind" NOT NULL,
	"summary" text NOT NULL,
	"commit_sha" text NOT NULL,
	"task_id" text,
	"change_number" integer,
	"restores" integer,
	"tests" text,
	"acceptance" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "checkpoints" ADD CONSTRAINT "checkpoints_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "checkpoints_project_number" ON "checkpoints" USING btree ("project_id","number");--> statement-breakpoint
CREATE UNIQUE INDEX "checkpoints_project_commit" ON "checkpoints" USING btree ("project_id","commit_sha");