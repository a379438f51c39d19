-- Tenant isolation of AI streams: a stream id is the client's, so it is unique per tenant, not
-- across tenants (two tenants may both use stream id "s1"); their chunks are keyed by tenant too.
-- Safe on an existing database: existing rows keep their ids, chunks get their stream's tenant.
DROP INDEX IF EXISTS im_messages_stream;
CREATE UNIQUE INDEX IF NOT EXISTS im_messages_tenant_stream ON im_messages (tenant_id, stream_id) WHERE stream_id IS NOT NULL;

ALTER TABLE ai_stream_chunks ADD COLUMN IF NOT EXISTS tenant_id text;
UPDATE ai_stream_chunks k SET tenant_id = m.tenant_id
FROM im_messages m WHERE m.stream_id = k.stream_id AND k.tenant_id IS NULL;
-- Chunks of a stream whose message is gone cannot be read by anyone.
DELETE FROM ai_stream_chunks WHERE tenant_id IS NULL;
ALTER TABLE ai_stream_chunks ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE ai_stream_chunks DROP CONSTRAINT IF EXISTS ai_stream_chunks_pkey;
ALTER TABLE ai_stream_chunks ADD PRIMARY KEY (tenant_id, stream_id, chunk_index);
