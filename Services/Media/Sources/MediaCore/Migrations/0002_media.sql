-- Media: voice messages, images and files of a conversation, stored in S3 under object_key.
-- Lifecycle (the media service owns every transition):
--   * upload_token inserts a 'pending' row (declared type and size, original filename, uploader)
--     before any object can exist, so every object in the bucket has a row;
--   * upload_complete verifies the object (size, SHA-256, sniffed type) and sets 'ready', or
--     deletes the object and leaves the row pending;
--   * pending rows whose upload URL expired (expires_at, plus a grace period for uploads still
--     in flight) are swept with their object; sweep_claimed_until is the sweeper's lease (set once,
--     never reset, so a claimed row can no longer become ready);
--   * deleting a ready media deletes the object, then the row; deleting a pending one deletes the
--     object and marks the row deleted_at, so a late upload through the still-valid URL is swept too.
-- The messaging service reads duration_ms, content_type and size of 'ready' rows for audio messages.

CREATE TABLE media (
    media_id            text PRIMARY KEY CHECK (media_id ~ '^media_[0-9a-f]{32}$'),
    tenant_id           text NOT NULL,
    conversation_id     text NOT NULL,
    uploader_id         text NOT NULL,
    status              text NOT NULL CHECK (status IN ('pending', 'ready')),
    content_type        text NOT NULL,
    size                bigint NOT NULL CHECK (size > 0),
    duration_ms         integer CHECK (duration_ms >= 0),
    original_filename   text NOT NULL,
    object_key          text NOT NULL UNIQUE,
    sha256              text,
    etag                text,
    expires_at          timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz,
    deleted_at          timestamptz,
    sweep_claimed_until timestamptz,
    CHECK (status = 'pending' OR (sha256 IS NOT NULL AND completed_at IS NOT NULL AND deleted_at IS NULL))
);
CREATE INDEX media_conversation ON media (conversation_id, created_at);
CREATE INDEX media_pending_expiry ON media (expires_at) WHERE status = 'pending';
