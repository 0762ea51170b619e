-- English full-text search over a chunk's heading (weight A) and text (weight B). A generated
-- column's expression cannot be altered in place, and drizzle-kit's drop-and-add loses the GIN
-- index on it: so the column and its index are made again here, in one migration. fastupdate off:
-- new chunks go straight into the index instead of a pending list every search would have to scan.
DROP INDEX IF EXISTS "rag_chunks_tsv_idx";--> statement-breakpoint
ALTER TABLE "rag_chunks" DROP COLUMN "tsv";--> statement-breakpoint
ALTER TABLE "rag_chunks" ADD COLUMN "tsv" tsvector GENERATED ALWAYS AS (setweight(to_tsvector('english', "heading"), 'A') || setweight(to_tsvector('english', "text"), 'B')) STORED NOT NULL;--> statement-breakpoint
CREATE INDEX "rag_chunks_tsv_idx" ON "rag_chunks" USING gin ("tsv") WITH (fastupdate=false);
