import AIIMBackendKit
import AIIMConfiguration
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// AI answers as generations (docs/AI.md): an `ai` message with a state, a status label and
/// typed parts built from offset-numbered deltas. Deltas are appended to the answer's Redis log
/// (`GenerationLog`) and delivered at once; PostgreSQL gets them at checkpoints (time or count),
/// one row per checkpoint, and the folded parts when the answer ends. A producer's ack carries
/// both offsets: `offset` (accepted and delivered) and `persisted_offset` (durable).
struct GenerationSettings: Sendable {
    /// `AI_STREAM_MAX_BYTES`: the largest answer (sum of its deltas' JSON). Default 1 MiB.
    var maxBytes = 1024 * 1024
    /// `AI_STREAM_MAX_CHUNKS`: the most deltas (or chunks) one answer may have. Default 20000.
    var maxDeltas = 20_000
    /// `GENERATION_CHECKPOINT_MS`: deltas reach PostgreSQL at most this long after they were
    /// accepted (also after `checkpointDeltas` of them). Default 500.
    var checkpointMillis = 500
    var checkpointDeltas: Int64 = 256
    /// `GENERATION_STOP_GRACE_SECONDS`: a producer that does not end a stopped answer in this
    /// time has it ended for it (`stopped`, parts kept). Default 10.
    var stopGrace: Duration = .seconds(10)
    /// `GENERATION_LABEL_TTL_MS`: how long a status label shows unless the agent says. Default 120000.
    var labelTTLMillis = 120_000
    /// `GENERATION_TIMEOUT_SECONDS`: an answer with no delta or status for this long (its producer's
    /// socket dropped, it crashed) ends `interrupted`, its parts kept. Default 30 (as
    /// `STREAM_TIMEOUT_SECONDS` for the original's streams).
    var silenceTimeout: Duration = .seconds(30)

    init() {}

    init(env: Environment) throws {
        maxBytes = try env.int("AI_STREAM_MAX_BYTES", default: maxBytes)
        maxDeltas = try env.int("AI_STREAM_MAX_CHUNKS", default: maxDeltas)
        checkpointMillis = try env.int("GENERATION_CHECKPOINT_MS", default: checkpointMillis)
        stopGrace = .seconds(try env.int("GENERATION_STOP_GRACE_SECONDS", default: 10))
        labelTTLMillis = try env.int("GENERATION_LABEL_TTL_MS", default: labelTTLMillis)
        silenceTimeout = .seconds(try env.int("GENERATION_TIMEOUT_SECONDS", default: 30))
        guard maxBytes >= 1024, maxDeltas >= 1, checkpointMillis >= 10, labelTTLMillis >= 1000 else {
            throw ConfigurationError("AI_STREAM_MAX_BYTES, AI_STREAM_MAX_CHUNKS, GENERATION_* settings are out of range")
        }
    }
}

extension MessagingService {
    var log: GenerationLog { GenerationLog(redis: runtime.redis, maxBytes: generationSettings.maxBytes, maxDeltas: generationSettings.maxDeltas) }

    static func producerKey(_ actor: Actor) -> String { actor.tenantID + "/" + actor.userID }

    static let maxLabelLength = 200

    func validLabel(_ label: String?) throws -> String? {
        guard let label else { return nil }
        guard label.count <= Self.maxLabelLength else { throw AIIMError.validation("label must be at most \(Self.maxLabelLength) characters") }
        guard !label.utf8.contains(0) else { throw AIIMError.validation("label must not contain NUL characters") }
        return label.isEmpty ? nil : label
    }

    func labelExpiry(_ ttl: Int?) throws -> Date {
        let ttl = ttl ?? generationSettings.labelTTLMillis
        guard (1000...3_600_000).contains(ttl) else { throw AIIMError.validation("label_ttl_ms must be 1000-3600000") }
        return Date(timeIntervalSinceNow: Double(ttl) / 1000)
    }

    // MARK: start

    func startGeneration(_ cmd: StartGeneration) async throws -> GenerationSnapshot {
        let conversationID = try Validation.id(cmd.conversationID, field: "conversation_id")
        let clientID = try Validation.id(cmd.clientGenerationID, field: "client_generation_id")
        let replyTo = try Validation.optionalID(cmd.replyTo, field: "reply_to")
        var requester = try Validation.optionalID(cmd.requesterID, field: "requester_id")
        guard cmd.state == .queued || cmd.state == .thinking || cmd.state == .generating else {
            throw AIIMError.validation("state must be queued, thinking or generating")
        }
        let label = try validLabel(cmd.label)
        let expiry = label == nil ? nil : try labelExpiry(cmd.labelTTLMillis)
        try await requireMember(cmd.actor, conversationID)
        if let existing = try await existingMessage(conversationID, cmd.actor.userID, "gen:" + clientID, tenant: cmd.actor.tenantID) {
            return GenerationSnapshot(message: existing.message, deltas: nil)
        }
        if let replyTo {
            let rows = try await postgres.query(
                "SELECT sender_id FROM im_messages WHERE message_id = $1 AND conversation_id = $2", [replyTo, conversationID])
            guard let sender: String = rows.first?.optional("sender_id") else {
                throw AIIMError.validation("reply_to must be a message of this conversation")
            }
            requester = requester ?? sender
        }
        let members = try await memberIDs(conversationID)
        let rule = try await postgres.query("SELECT ai_reasoning FROM conversations WHERE conversation_id = $1", [conversationID])
        let hidden = (rule.first?.optional("ai_reasoning", as: String.self)) == "hidden"
        let info = GenerationInfo(state: cmd.state, label: label, labelExpiresAt: expiry, producerID: cmd.actor.userID,
                                  requesterID: requester, reasoning: hidden ? "hidden" : nil)
        // The live log exists before the message is committed, so neither a delta right after the
        // ack nor another replica's watcher (which ends live answers whose log is gone) can find
        // the message without it.
        let messageID = UUIDs.make()
        try await log.create(messageID, meta: .init(
            state: cmd.state, last: 0, persisted: 0, producer: Self.producerKey(cmd.actor), tenant: cmd.actor.tenantID,
            conversation: conversationID, recipients: members, lastActivity: Timestamp.nowMillis(),
            persistedAt: Timestamp.nowMillis(), silenceTimeoutMillis: generationSettings.silenceTimeout.wholeMilliseconds,
            reasoningHidden: hidden))
        let result: SendResult
        do {
            result = try await insert(
                conversationID: conversationID, tenantID: cmd.actor.tenantID, senderID: cmd.actor.userID, kind: "ai",
                content: ["text": "", "parts": []], replyTo: replyTo, clientMsgID: "gen:" + clientID,
                generation: try JSONValue(encoding: info), messageID: messageID)
        } catch {
            try? await log.discard(messageID)
            throw error
        }
        if result.duplicate { try? await log.discard(messageID) }
        return GenerationSnapshot(message: result.message, deltas: nil)
    }

    // MARK: append

    func appendGeneration(_ cmd: AppendGeneration) async throws -> GenerationAck {
        let id = try Validation.id(cmd.messageID, field: "message_id")
        guard !cmd.deltas.isEmpty, cmd.deltas.count <= 1000 else { throw AIIMError.validation("deltas must hold 1-1000 deltas") }
        let codes = try cmd.deltas.map { d -> String in
            let code = try GenerationParts.validate(d)
            guard GenerationLog.payload(d).utf8.count <= GenerationParts.maxDeltaBytes else {
                throw AIIMError(.payloadTooLarge, "a delta is larger than \(GenerationParts.maxDeltaBytes) bytes")
            }
            return code
        }
        for (a, b) in zip(cmd.deltas, cmd.deltas.dropFirst()) where b.offset != a.offset + 1 {
            throw AIIMError.validation("deltas must have consecutive offsets")
        }
        let result = try await log.append(id, producer: Self.producerKey(cmd.actor), deltas: cmd.deltas, codes: codes)
        guard let meta = try await log.meta(id) else { throw AIIMError.notFound("no such answer") }
        var events: [(event: DeliveryEvent, trace: Trace?)] = []
        if !result.accepted.isEmpty {
            events.append((try deltaEvent(id, meta: meta, deltas: result.accepted), Trace.current))
        }
        if result.state != result.previousState {
            events.append((statusEvent(id, meta: meta, state: result.state, offset: result.last), Trace.current))
        }
        if !events.isEmpty { try await runtime.publish(events) }
        var persisted = meta.persisted
        if result.last - persisted >= generationSettings.checkpointDeltas
            || Timestamp.nowMillis() - meta.persistedAt >= Int64(generationSettings.checkpointMillis) {
            persisted = try await checkpoint(id, meta: meta)
        }
        return GenerationAck(messageID: id, offset: result.last, persistedOffset: persisted, state: result.state,
                             stopRequested: meta.stopRequestedBy != nil)
    }

    /// Writes the deltas after the persisted offset to PostgreSQL (one row) and moves the offset;
    /// returns the new persisted offset. Safe to run twice or on two replicas at once.
    @discardableResult
    func checkpoint(_ id: String, meta: GenerationLog.Meta) async throws -> Int64 {
        let deltas = try await log.deltas(id, after: meta.persisted, upTo: meta.last)
        guard let first = deltas.first, let last = deltas.last else { return meta.persisted }
        _ = try await postgres.atomically([
            ("INSERT INTO generation_deltas (message_id, first_offset, last_offset, deltas) VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT DO NOTHING",
             [id, first.offset, last.offset, try JSONValue(encoding: deltas)]),
            ("""
             UPDATE im_messages SET stream_updated_at = now(),
                 generation = jsonb_set(jsonb_set(generation, '{persisted_offset}', to_jsonb($2::bigint)), '{offset}', to_jsonb($2::bigint))
             WHERE message_id = $1 AND COALESCE((generation->>'persisted_offset')::bigint, 0) < $2
             """, [id, last.offset]),
        ])
        try await log.markPersisted(id, upTo: last.offset)
        return last.offset
    }

    // MARK: status, stop

    func setGenerationStatus(_ cmd: SetGenerationStatus) async throws -> GenerationAck {
        let id = try Validation.id(cmd.messageID, field: "message_id")
        if let s = cmd.state, !s.isLive { throw AIIMError.validation("state must be queued, thinking, generating or tool_call; end the answer with generation.end") }
        let label = try validLabel(cmd.label)
        let expiry = label == nil ? nil : try labelExpiry(cmd.labelTTLMillis)
        let (state, offset) = try await log.setStatus(id, producer: Self.producerKey(cmd.actor), state: cmd.state)
        guard let meta = try await log.meta(id) else { throw AIIMError.notFound("no such answer") }
        var patch: [String: JSONValue] = ["state": .string(state.rawValue)]
        if cmd.label != nil {
            patch["label"] = label.map { .string($0) } ?? .null
            patch["label_expires_at"] = expiry.map { .string(Timestamp.iso8601($0)) } ?? .null
        }
        try await postgres.query("UPDATE im_messages SET generation = generation || $2::jsonb WHERE message_id = $1",
                                 [id, JSONValue.object(patch)])
        try await runtime.publish(statusEvent(id, meta: meta, state: state, offset: offset, label: cmd.label == nil ? nil : (label, expiry)))
        return GenerationAck(messageID: id, offset: offset, persistedOffset: meta.persisted, state: state,
                             stopRequested: meta.stopRequestedBy != nil)
    }

    /// Any member may stop an answer (docs/AI.md): the producer is told, every member sees it.
    func stopGeneration(_ cmd: StopGeneration) async throws -> GenerationAck {
        let id = try Validation.id(cmd.messageID, field: "message_id")
        guard let before = try await log.meta(id), before.tenant == cmd.actor.tenantID else {
            // Ended long ago (log gone) or another tenant's: answer from the message itself.
            let message = try await generationMessage(id, actor: cmd.actor)
            throw AIIMError(.invalidState, "the answer has ended (\(message.generation?.state.rawValue ?? "unknown"))")
        }
        try await requireMember(cmd.actor, before.conversation)
        guard before.state.isLive else { throw AIIMError(.invalidState, "the answer has ended (\(before.state.rawValue))") }
        guard let meta = try await log.requestStop(id, by: cmd.actor.userID, grace: generationSettings.stopGrace) else { throw AIIMError.notFound("no such answer") }
        if before.stopRequestedBy == nil {
            try await postgres.query(
                "UPDATE im_messages SET generation = jsonb_set(generation, '{stop_requested_by}', to_jsonb($2::text)) WHERE message_id = $1",
                [id, cmd.actor.userID])
            let producer = String(meta.producer.split(separator: "/", maxSplits: 1).last ?? "")
            try await runtime.publish([
                (statusEvent(id, meta: meta, state: meta.state, offset: meta.last), Trace.current),
                (DeliveryEvent(tenantID: meta.tenant, recipients: [producer], frame: conversationEvent(meta.conversation, "generation.stop_requested", [
                    "message_id": .string(id), "requested_by": .string(cmd.actor.userID), "offset": .number(Double(meta.last)),
                ])), Trace.current),
            ])
        }
        return GenerationAck(messageID: id, offset: meta.last, persistedOffset: meta.persisted, state: meta.state, stopRequested: true)
    }

    // MARK: end

    func endGeneration(_ cmd: EndGeneration) async throws -> GenerationSnapshot {
        let id = try Validation.id(cmd.messageID, field: "message_id")
        guard [.completed, .stopped, .failed].contains(cmd.state) else { throw AIIMError.validation("state must be completed, stopped or failed") }
        if let e = cmd.error { guard e.count <= 500, !e.utf8.contains(0) else { throw AIIMError.validation("error must be at most 500 characters") } }
        guard let meta = try await log.meta(id) else { throw AIIMError.notFound("no such answer") }
        guard meta.producer == Self.producerKey(cmd.actor) else { throw AIIMError.forbidden("only the answer's producer can change it") }
        if let last = cmd.lastOffset, last != meta.last {
            throw AIIMError.validation("last_offset is \(last) but the answer has \(meta.last) deltas: send the missing ones first")
        }
        guard let ended = try await log.finish(id, producer: meta.producer, state: cmd.state) else {
            let message = try await generationMessage(id, actor: cmd.actor)
            if message.generation?.state == cmd.state { return GenerationSnapshot(message: message, deltas: nil) }
            throw AIIMError(.invalidState, "the answer has ended (\(message.generation?.state.rawValue ?? meta.state.rawValue))")
        }
        return GenerationSnapshot(message: try await finalize(id, meta: ended, state: cmd.state, error: cmd.error), deltas: nil)
    }

    /// Persists what is left, folds every delta into the message's parts, and tells the members.
    /// Runs once per answer (`GenerationLog.finish` decides who).
    func finalize(_ id: String, meta: GenerationLog.Meta?, state: GenerationState, error: String?) async throws -> MessageDTO {
        if let meta { try await checkpoint(id, meta: meta) }
        let parts = try await fold(id, includeLog: false)
        // Only a live answer is finalized: a second finalize (a watcher racing the producer's end)
        // finds it ended and changes nothing.
        let rows = try await postgres.query("""
            UPDATE im_messages SET content = $2::jsonb, stream_updated_at = now(),
                generation = generation || jsonb_build_object('state', $3::text, 'offset', $4::bigint, 'persisted_offset', $4::bigint,
                                                             'error', $5::text, 'label', NULL, 'label_expires_at', NULL)
            WHERE message_id = $1 AND generation->>'state' IN ('queued', 'thinking', 'generating', 'tool_call')
            RETURNING \(Rows.messageColumns()), tenant_id,
                (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = im_messages.conversation_id) AS members
            """, [id, parts.content(final: true), state.rawValue, parts.offset, error])
        guard let row = rows.first else {
            let current = try await postgres.query("SELECT \(Rows.messageColumns()) FROM im_messages WHERE message_id = $1", [id])
            return try Rows.message(try current.first.orThrow(AIIMError.notFound("no such answer")))
        }
        try await postgres.query("DELETE FROM generation_deltas WHERE message_id = $1", [id])
        let message = try Rows.message(row)
        let tenant: String = try row.decode("tenant_id")
        try await runtime.publish(DeliveryEvent(
            tenantID: tenant, recipients: Rows.stringList(row, "members"),
            frame: conversationEvent(message.conversationID, "generation.status", statusFields(id, state: state, offset: parts.offset, error: error))))
        runtime.logger.info("answer ended", metadata: ["message_id": "\(id)", "state": "\(state.rawValue)", "offset": "\(parts.offset)"])
        return message
    }

    /// The parts from PostgreSQL's checkpoints and (while live) the Redis log after them.
    func fold(_ id: String, includeLog: Bool) async throws -> GenerationParts {
        var parts = GenerationParts()
        let rows = try await postgres.query(
            "SELECT deltas FROM generation_deltas WHERE message_id = $1 ORDER BY first_offset, last_offset", [id])
        for row in rows.rows {
            let deltas = try JSONCoding.decode([GenerationDelta].self, from: try row.decode("deltas", as: JSONValue.self))
            for d in deltas { parts.apply(d) }
        }
        if includeLog {
            for d in try await log.deltas(id, after: parts.offset) { parts.apply(d) }
        }
        return parts
    }

    // MARK: read

    func generationMessage(_ id: String, actor: Actor) async throws -> MessageDTO {
        let rows = try await postgres.query("""
            SELECT \(Rows.messageColumns("m")) FROM im_messages m
            WHERE m.message_id = $1 AND m.tenant_id = $2
              AND EXISTS (SELECT 1 FROM conversation_members c WHERE c.conversation_id = m.conversation_id AND c.user_id = $3)
            """, [id, actor.tenantID, actor.userID])
        guard let row = rows.first else { throw AIIMError.notFound("no such answer") }
        let message = try Rows.message(row)
        guard message.generation != nil else { throw AIIMError.notFound("no such answer") }
        return message
    }

    /// The answer now (its parts so far), and with `after_offset` the deltas after it: a device
    /// that reconnects applies them, then live ones (the gateway holds live ones back meanwhile).
    func getGeneration(_ cmd: GetGeneration) async throws -> GenerationSnapshot {
        let id = try Validation.id(cmd.messageID, field: "message_id")
        if let a = cmd.afterOffset, a < 0 { throw AIIMError.validation("after_offset must not be negative") }
        var message = try await generationMessage(id, actor: cmd.actor)
        guard let info = message.generation, info.state.isLive else {
            return GenerationSnapshot(message: message, deltas: cmd.afterOffset.map { _ in [] })
        }
        var all = GenerationParts()
        var tail: [GenerationDelta] = []
        let rows = try await postgres.query("SELECT deltas FROM generation_deltas WHERE message_id = $1 ORDER BY first_offset, last_offset", [id])
        var deltas: [GenerationDelta] = []
        for row in rows.rows { deltas += try JSONCoding.decode([GenerationDelta].self, from: try row.decode("deltas", as: JSONValue.self)) }
        let stored = deltas.map(\.offset).max() ?? 0
        deltas += try await log.deltas(id, after: stored)
        for d in deltas {
            all.apply(d)
            if let a = cmd.afterOffset, d.offset > a, d.offset == (tail.last?.offset ?? a) + 1 { tail.append(d) }
        }
        message.content = all.content(final: false)
        if message.generation?.reasoning == "hidden" {
            message.content = GenerationParts.hidingReasoning(message.content)
            tail = GenerationParts.hidingReasoning(tail, isReasoning: all.isReasoning)
        }
        message.generation?.offset = all.offset
        if let meta = try await log.meta(id) { message.generation?.state = meta.state; message.generation?.persistedOffset = meta.persisted }
        return GenerationSnapshot(message: message, deltas: cmd.afterOffset.map { _ in tail })
    }

    /// History and sync show a live answer with its parts so far.
    func withLiveParts(_ messages: [MessageDTO]) async throws -> [MessageDTO] {
        guard messages.contains(where: { $0.generation?.state.isLive == true || $0.stream?.state == "streaming" }) else { return messages }
        var out = messages
        for i in out.indices where out[i].stream?.state == "streaming" { out[i] = try await withStreamText(out[i]) }
        for i in out.indices where out[i].generation?.state.isLive == true {
            let parts = try await fold(out[i].messageID, includeLog: true)
            out[i].content = parts.content(final: false)
            if out[i].generation?.reasoning == "hidden" { out[i].content = GenerationParts.hidingReasoning(out[i].content) }
            out[i].generation?.offset = parts.offset
        }
        return out
    }

    // MARK: events

    func deltaEvent(_ id: String, meta: GenerationLog.Meta, deltas: [GenerationDelta]) throws -> DeliveryEvent {
        var event = DeliveryEvent(
            tenantID: meta.tenant, recipients: meta.recipients,
            frame: conversationEvent(meta.conversation, "generation.delta", [
                "message_id": .string(id),
                "deltas": try JSONValue(encoding: meta.reasoningHidden ? GenerationParts.hidingReasoning(deltas, isReasoning: meta.isReasoning) : deltas),
            ]))
        event.generation = GenerationRoute(messageID: id, from: deltas.first?.offset ?? 0, to: deltas.last?.offset ?? 0)
        return event
    }

    func statusFields(_ id: String, state: GenerationState, offset: Int64, error: String? = nil) -> [String: JSONValue] {
        var f: [String: JSONValue] = ["message_id": .string(id), "state": .string(state.rawValue), "offset": .number(Double(offset))]
        if let error { f["error"] = .string(error) }
        return f
    }

    func statusEvent(_ id: String, meta: GenerationLog.Meta, state: GenerationState, offset: Int64,
                     label: (String?, Date?)? = nil) -> DeliveryEvent {
        var f = statusFields(id, state: state, offset: offset)
        if let (text, expiry) = label {
            f["label"] = text.map { .string($0) } ?? .null
            f["label_expires_at"] = expiry.map { .string(Timestamp.iso8601($0)) } ?? .null
        }
        if let by = meta.stopRequestedBy { f["stop_requested_by"] = .string(by) }
        return DeliveryEvent(tenantID: meta.tenant, recipients: meta.recipients,
                             frame: conversationEvent(meta.conversation, "generation.status", f))
    }
}

/// Ends answers nobody ends: a producer silent for `GENERATION_TIMEOUT_SECONDS` (its socket dropped,
/// it crashed) → `interrupted`; a stop the producer does not acknowledge within the grace →
/// `stopped`. Also checkpoints answers that went quiet with deltas not yet in PostgreSQL. Any
/// replica may run it at once: `GenerationLog.finish` ends each answer once.
struct GenerationWatcher: Service {
    let service: MessagingService
    let interval: Duration

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: interval)
            do { try await pass() } catch {
                service.runtime.logger.warning("generation watcher pass failed", metadata: ["error": "\(error)"])
            }
        }
    }

    func pass() async throws {
        let rows = try await service.postgres.query("""
            SELECT message_id, (extract(epoch FROM now() - created_at) * 1000)::bigint AS age_ms FROM im_messages
            WHERE generation IS NOT NULL AND generation->>'state' IN ('queued', 'thinking', 'generating', 'tool_call')
            ORDER BY stream_updated_at LIMIT 500
            """)
        let now = Timestamp.nowMillis()
        let settings = service.generationSettings
        for row in rows.rows {
            let id: String = try row.decode("message_id")
            guard let meta = try await service.log.meta(id) else {
                // The live log is gone (Redis lost it): keep what PostgreSQL has. A start writes
                // the log first, so this is never a start in flight; a minute's wait still keeps a
                // replica running an older build (which wrote the row first) from ending it.
                let age: Int64 = (try? row.decode("age_ms")) ?? 0
                if age < 60_000 { continue }
                _ = try await service.finalize(id, meta: nil, state: .interrupted, error: "the answer's live log was lost")
                continue
            }
            var end: GenerationState?
            if !meta.state.isLive {
                // Ended in Redis but not in PostgreSQL: its finalize died half-way (PostgreSQL was
                // down, the replica was killed) or is running now. Finalizing is idempotent (only a
                // live row is updated), so after a few seconds any replica completes it.
                if now - (meta.finishedAt ?? meta.lastActivity) >= 5_000 { end = meta.state } else { continue }
            }
            else if let at = meta.stopAt, now - at >= meta.stopGraceMillis ?? settings.stopGrace.wholeMilliseconds { end = .stopped }
            else if now - meta.lastActivity >= meta.silenceTimeoutMillis ?? settings.silenceTimeout.wholeMilliseconds { end = .interrupted }
            if let end {
                if meta.state.isLive {
                    guard let ended = try await service.log.finish(id, producer: nil, state: end) else { continue }
                    _ = try await service.finalize(id, meta: ended, state: end, error: end == .interrupted ? "the producer went silent" : nil)
                } else {
                    _ = try await service.finalize(id, meta: meta, state: end, error: nil)
                }
            } else if meta.last > meta.persisted, now - meta.persistedAt >= Int64(settings.checkpointMillis) {
                try await service.checkpoint(id, meta: meta)
            }
        }
    }
}
