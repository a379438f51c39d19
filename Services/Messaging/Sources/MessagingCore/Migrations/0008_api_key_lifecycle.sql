-- API key lifecycle (docs/API.md, "API keys"): every key has an owner (the person who created it),
-- who alone lists and revokes it, and may have an expiry. Keys created before this migration have
-- no owner: they keep working until revoked in SQL (UPDATE api_keys SET revoked_at = now() ...).
-- Only adds nullable columns and an index, so it is safe on a database with keys in use.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS owner_id text;
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS expires_at timestamptz;
-- The owner's list and the per-owner cap (API_KEYS_PER_OWNER); a key's id is its bot user.
CREATE INDEX IF NOT EXISTS api_keys_owner ON api_keys (tenant_id, owner_id, created_at DESC) WHERE owner_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (tenant_id, user_id);
