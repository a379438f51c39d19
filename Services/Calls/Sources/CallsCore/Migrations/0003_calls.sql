-- 1:1 audio/video calls (owned by the calls service).
-- Invariants the database enforces (not the application):
--   * at most one active call (initiated/ringing/answered) per conversation;
--   * a user takes part in at most one active call per tenant (a second caller gets `busy`);
--   * a call ends exactly once: end_time is set if and only if the status is final.

CREATE TABLE calls (
    call_id             text PRIMARY KEY,
    tenant_id           text NOT NULL,
    conversation_id     text NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    initiator_id        text NOT NULL,
    callee_id           text NOT NULL,
    call_type           text NOT NULL CHECK (call_type IN ('audio', 'video')),
    status              text NOT NULL CHECK (status IN ('initiated', 'ringing', 'answered', 'completed',
                                                        'rejected', 'missed', 'cancelled', 'busy', 'failed')),
    -- +1 per transition; events carry it so devices can drop stale ones.
    version             integer NOT NULL DEFAULT 1,
    start_time          timestamptz NOT NULL DEFAULT now(),
    answer_time         timestamptz,
    end_time            timestamptz,
    duration_sec        integer,
    ended_by            text,
    -- The WebSocket connection that accepted (a second device's accept is refused).
    answered_connection text,
    -- Unanswered at this time: missed.
    ring_deadline       timestamptz NOT NULL,
    -- A participant's last connection closed; failed at this time unless it comes back.
    disconnect_deadline timestamptz,
    CHECK (initiator_id <> callee_id),
    CHECK ((status IN ('initiated', 'ringing', 'answered')) = (end_time IS NULL)),
    CHECK ((status IN ('answered', 'completed')) <= (answer_time IS NOT NULL))
);
CREATE UNIQUE INDEX calls_one_active_per_conversation ON calls (conversation_id)
    WHERE status IN ('initiated', 'ringing', 'answered');
CREATE INDEX calls_history ON calls (conversation_id, start_time DESC, call_id DESC);
-- What the timer loop scans.
CREATE INDEX calls_ring_due ON calls (ring_deadline) WHERE status IN ('initiated', 'ringing');
CREATE INDEX calls_disconnect_due ON calls (disconnect_deadline)
    WHERE disconnect_deadline IS NOT NULL AND status IN ('initiated', 'ringing', 'answered');

CREATE TABLE call_participants (
    call_id         text NOT NULL REFERENCES calls (call_id) ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    user_id         text NOT NULL,
    role            text NOT NULL CHECK (role IN ('caller', 'callee')),
    -- True while the call is active: the busy check is this index.
    active          boolean NOT NULL,
    -- Set while the user has no WebSocket (caller from the start, callee once answered).
    disconnected_at timestamptz,
    -- Time of the last disconnect/reconnect applied; older ones are ignored.
    presence_at     timestamptz,
    PRIMARY KEY (call_id, user_id)
);
CREATE UNIQUE INDEX call_participants_one_active_call ON call_participants (tenant_id, user_id) WHERE active;

-- Events and system messages of committed transitions, written in the same transaction and
-- deleted once published: a crash or a Redis outage between commit and publish delays them
-- instead of losing them.
CREATE TABLE call_outbox (
    id            bigserial PRIMARY KEY,
    call_id       text NOT NULL,
    body          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- The writer publishes right after commit; the relay takes rows whose claim expired.
    claimed_until timestamptz NOT NULL
);
CREATE INDEX call_outbox_claim ON call_outbox (claimed_until);
