-- Conversations, members, messages, AI streams, API keys.
-- Invariants the database enforces (not the application):
--   * per-conversation seq is unique (dense by construction: assigned from conversations.last_seq
--     under the row lock of the insert transaction);
--   * (conversation, sender, client_msg_id) is unique: a retried send returns the original;
--   * one membership row per (conversation, user);
--   * one direct conversation per pair of users in a tenant.

CREATE TABLE conversations (
    conversation_id text PRIMARY KEY,
    tenant_id       text NOT NULL,
    type            text NOT NULL CHECK (type IN ('direct', 'group')),
    name            text,
    direct_key      text,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    last_seq        bigint NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX conversations_direct_key ON conversations (tenant_id, direct_key) WHERE direct_key IS NOT NULL;

CREATE TABLE conversation_members (
    conversation_id    text NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    user_id            text NOT NULL,
    tenant_id          text NOT NULL,
    role               text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'assistant')),
    joined_at          timestamptz NOT NULL DEFAULT now(),
    last_read_seq      bigint NOT NULL DEFAULT 0,
    last_read_message_id text,
    last_read_at       timestamptz,
    last_delivered_seq bigint NOT NULL DEFAULT 0,
    last_delivered_at  timestamptz,
    muted              boolean NOT NULL DEFAULT false,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (tenant_id, user_id);

CREATE TABLE im_messages (
    message_id      text PRIMARY KEY,
    conversation_id text NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    sender_id       text NOT NULL,
    type            text NOT NULL,
    content         jsonb NOT NULL,
    reply_to        text,
    client_msg_id   text,
    seq             bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    edited_at       timestamptz,
    deleted_at      timestamptz,
    stream_id       text,
    stream_state    text CHECK (stream_state IN ('streaming', 'completed', 'interrupted')),
    stream_chunks   integer NOT NULL DEFAULT 0,
    stream_updated_at timestamptz,
    CONSTRAINT im_messages_conversation_seq UNIQUE (conversation_id, seq)
);
CREATE UNIQUE INDEX im_messages_idempotent ON im_messages (conversation_id, sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
CREATE UNIQUE INDEX im_messages_stream ON im_messages (stream_id) WHERE stream_id IS NOT NULL;
CREATE INDEX im_messages_streaming ON im_messages (stream_updated_at) WHERE stream_state = 'streaming';

-- Chunks of an AI answer while it streams; the final message holds the whole text.
CREATE TABLE ai_stream_chunks (
    stream_id   text NOT NULL,
    chunk_index integer NOT NULL,
    content     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, chunk_index)
);

-- Service accounts for AI agents: an API key (stored as SHA-256) acts as a bot user.
CREATE TABLE api_keys (
    key_hash    text PRIMARY KEY,
    tenant_id   text NOT NULL,
    user_id     text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
