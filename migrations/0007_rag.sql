CREATE TABLE "rag_ingest_failures" (
	"id" text PRIMARY KEY NOT NULL,
	"message" jsonb NOT NULL,
	"subject" text NOT NULL,
	"project_id" text,
	"error" text NOT NULL,
	"attempts" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
DROP INDEX "rag_documents_source_idx";--> statement-breakpoint
ALTER TABLE "rag_chunks" ADD COLUMN "owner_id" text;--> statement-breakpoint
ALTER TABLE "rag_chunks" ADD COLUMN "heading" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "rag_documents" ADD COLUMN "owner_id" text;--> statement-breakpoint
ALTER TABLE "rag_documents" ADD COLUMN "chunk_count" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "rag_ingest_failures" ADD CONSTRAINT "rag_ingest_failures_project_id_projects_id_fk" FOREIGN KEY ("project_id") REFERENCES "public"."projects"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "rag_ingest_failures_created_idx" ON "rag_ingest_failures" USING btree ("created_at");--> statement-breakpoint
ALTER TABLE "rag_chunks" ADD CONSTRAINT "rag_chunks_owner_id_users_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rag_documents" ADD CONSTRAINT "rag_documents_owner_id_users_id_fk" FOREIGN KEY ("owner_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "rag_chunks_document_idx" ON "rag_chunks" USING btree ("document_id");--> statement-breakpoint
CREATE INDEX "rag_chunks_owner_idx" ON "rag_chunks" USING btree ("owner_id");--> statement-breakpoint
CREATE INDEX "rag_documents_owner_idx" ON "rag_documents" USING btree ("owner_id");--> statement-breakpoint
ALTER TABLE "rag_documents" ADD CONSTRAINT "rag_documents_source_key" UNIQUE NULLS NOT DISTINCT("project_id","owner_id","scope","source");