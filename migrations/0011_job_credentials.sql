CREATE TABLE "job_credentials" (
	"id" text PRIMARY KEY NOT NULL,
	"task_id" text NOT NULL,
	"project_id" text,
	"user_id" text,
	"purpose" text NOT NULL,
	"model_key_hash" text,
	"agent" text NOT NULL,
	"model" text NOT NULL,
	"spend_cap_usd" numeric(12, 6) NOT NULL,
	"spent_usd" numeric(12, 6) DEFAULT '0' NOT NULL,
	"git_token" text,
	"expires_at" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "job_credentials_model_key_hash_unique" UNIQUE("model_key_hash")
);
--> statement-breakpoint
ALTER TABLE "telegram_outbox" ADD COLUMN "enqueued_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "job_credentials" ADD CONSTRAINT "job_credentials_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_credentials" ADD CONSTRAINT "job_credentials_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_credentials" ADD CONSTRAINT "job_credentials_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "job_credentials_task_idx" ON "job_credentials" USING btree ("task_id","purpose");--> statement-breakpoint
CREATE INDEX "job_credentials_open_idx" ON "job_credentials" USING btree ("expires_at") WHERE "job_credentials"."revoked_at" IS NULL;--> statement-breakpoint
-- Rows already in the table were handed to the queue when they were made.
UPDATE "telegram_outbox" SET "enqueued_at" = "created_at";
