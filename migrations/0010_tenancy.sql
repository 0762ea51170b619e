ALTER TABLE "projects" ADD COLUMN "managed" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "telegram_bots" ADD COLUMN "needs_rotation" boolean DEFAULT false NOT NULL;--> statement-breakpoint
-- What the factory manages moves out of the owner's config: budget, server, labels and domain (an
-- admin's to set), the deploy's env classification and the repository sync's state (the pipelines').
UPDATE "projects" SET
  "managed" = jsonb_strip_nulls(jsonb_build_object(
    'budgetUsd', "config"->'budgetUsd', 'server', "config"->'server', 'serverLabels', "config"->'serverLabels',
    'domain', "config"->'domain', 'env', "config"->'env', 'github', "config"->'github')),
  "config" = "config" - 'budgetUsd' - 'server' - 'serverLabels' - 'domain' - 'env' - 'github';--> statement-breakpoint
-- A bot that leaves its project, however (released, the project deleted: ON DELETE SET NULL is an
-- UPDATE too), waits for a new token before another project may have it.
CREATE FUNCTION "telegram_bots_leave_project"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD."project_id" IS NOT NULL AND NEW."project_id" IS DISTINCT FROM OLD."project_id" THEN
    NEW."needs_rotation" := true;
  END IF;
  RETURN NEW;
END $$;--> statement-breakpoint
CREATE TRIGGER "telegram_bots_leave_project" BEFORE UPDATE OF "project_id" ON "telegram_bots"
  FOR EACH ROW EXECUTE FUNCTION "telegram_bots_leave_project"();
