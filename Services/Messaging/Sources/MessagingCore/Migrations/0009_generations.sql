-- AI answers as generations (docs/AI.md). The answer is an `ai` message; `generation` holds its
-- state, status label and offsets (GenerationInfo). Deltas live in Redis while the answer is
-- produced and are persisted here at checkpoints, one row per checkpoint (never per token; two replicas' checkpoints may overlap, a reader applies
-- each offset once):
-- `generation_deltas` holds them until the answer ends and its parts are folded into `content`.
ALTER TABLE im_messages ADD COLUMN generation jsonb;
CREATE INDEX im_messages_live_generations ON im_messages (stream_updated_at)
    WHERE generation IS NOT NULL AND generation->>'state' IN ('queued', 'thinking', 'generating', 'tool_call');

CREATE TABLE generation_deltas (
    message_id   text NOT NULL REFERENCES im_messages (message_id) ON DELETE CASCADE,
    first_offset bigint NOT NULL,
    last_offset  bigint NOT NULL,
    deltas       jsonb NOT NULL,
    PRIMARY KEY (message_id, last_offset)
);

-- The original's streams (`stream_chunk`): bytes so far, so a cap needs no sum over chunks.
ALTER TABLE im_messages ADD COLUMN stream_bytes bigint NOT NULL DEFAULT 0;
