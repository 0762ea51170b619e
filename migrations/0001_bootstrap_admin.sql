-- The users row behind the ADMIN_API_KEY secret, so resources the bootstrap admin creates have an owner.
INSERT INTO "users" ("id", "name", "is_admin") VALUES ('usr_admin', 'admin', true) ON CONFLICT ("id") DO NOTHING;
