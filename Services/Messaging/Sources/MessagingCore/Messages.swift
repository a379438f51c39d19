import AIIMBackendKit
import AIIMConfiguration
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import AIIMRedis
import Foundation

/// Sending, history, edits, recalls and catch-up.
extension MessagingService {
    /// Sends a message. A plain message (no `reply_to`, not audio) joins the next batch
    /// (`SendBatcher`); anything the batch did not store, and every other message, takes the
    /// one-by-one path, which tells a retry, a stranger and a bad reference apart.
    /// A batched message's reply is spliced from the JSON the batch encoded anyway; when the
    /// requester reads the events stream (`replyByEvent`, a gateway), the message's event carries
    /// the answer instead of a reply entry.
    func send(_ cmd: SendMessage, context: CommandRouter.Context) async throws -> CommandRouter.Reply {
        let conversationID = try Validation.id(cmd.conversationID, field: "conversation_id")
        let clientMsgID = try Validation.id(cmd.clientMsgID, field: "client_msg_id")
        let replyTo = try Validation.optionalID(cmd.replyTo, field: "reply_to")
        let content = try Validation.content(cmd.content, type: cmd.kind)
        if replyTo == nil, cmd.kind != "audio" {
            let answer = cmd.replyByEvent == true ? context.replyTo.map { EventReply(stream: $0, correlationId: context.id) } : nil
            let pending = PendingSend(
                messageID: UUIDs.make(), conversationID: conversationID, tenantID: cmd.actor.tenantID,
                senderID: cmd.actor.userID, kind: cmd.kind, content: content, clientMsgID: clientMsgID, trace: context.trace,
                answer: answer)
            if let stored = try await batcher.submit(pending) { return answer == nil ? .encoded(stored.replyPayload) : .answeredByEvent }
        }
        let result = try await sendOne(cmd, conversationID: conversationID, clientMsgID: clientMsgID, replyTo: replyTo, content: content)
        return .encoded(try JSONCoding.encode(result))
    }

    /// Inserts one message in one statement: the conversation row is locked by the `UPDATE` that
    /// takes the next `seq`, so `seq` is dense and commit order equals `seq` order per
    /// conversation. A repeated `(conversation, sender, client_msg_id)` returns the original.
    func sendOne(_ cmd: SendMessage, conversationID: String, clientMsgID: String, replyTo: String?,
                 content: JSONValue) async throws -> SendResult {
        var content = content
        let actor = cmd.actor
        if let existing = try await existingMessage(conversationID, actor.userID, clientMsgID, tenant: actor.tenantID) {
            try await publishCreated(existing.message, tenant: actor.tenantID, members: existing.members)
            return SendResult(message: existing.message, duplicate: true)
        }
        try await requireMember(actor, conversationID)
        if let replyTo {
            let found = try await postgres.query(
                "SELECT 1 FROM im_messages WHERE message_id = $1 AND conversation_id = $2", [replyTo, conversationID])
            if found.rows.isEmpty { throw AIIMError.validation("reply_to must be a message of this conversation") }
        }
        if cmd.kind == "audio" { content = try await audioContent(content, conversationID: conversationID, actor: actor) }
        return try await insert(
            conversationID: conversationID, tenantID: actor.tenantID, senderID: actor.userID, kind: cmd.kind,
            content: content, replyTo: replyTo, clientMsgID: clientMsgID)
    }

    /// An audio message must point at ready media of the same conversation. The media service
    /// owns that table: it answers `media.attachment` with the file's duration, type and size
    /// (copied into the content), or with the validation error the sender sees.
    func audioContent(_ content: JSONValue, conversationID: String, actor: Actor) async throws -> JSONValue {
        guard let mediaID = content["media_id"]?.stringValue else { throw AIIMError.validation("audio content needs media_id") }
        let file = try await runtime.bus.request(
            MediaAttachment(tenantID: actor.tenantID, conversationID: conversationID, mediaID: mediaID),
            timeout: Self.mediaTimeout)
        var o = content.objectValue ?? [:]
        if let d = file.durationMs { o["duration_ms"] = .number(Double(d)) }
        o["content_type"] = .string(file.contentType)
        o["file_size"] = .number(Double(file.size))
        return .object(o)
    }

    /// How long an audio send waits for the media service (a lookup by primary key, answered in
    /// about a millisecond): past it, the send fails as transient and the consumer retries it.
    static let mediaTimeout: Duration = .seconds(2)

    /// The shared insert path (client messages, system messages, the first chunk of a stream).
    func insert(
        conversationID: String, tenantID: String, senderID: String, kind: String, content: JSONValue,
        replyTo: String?, clientMsgID: String, streamID: String? = nil, generation: JSONValue? = nil,
        messageID: String = UUIDs.make()
    ) async throws -> SendResult {
        let sql = """
            WITH c AS (
                UPDATE conversations SET last_seq = last_seq + 1, updated_at = now()
                WHERE conversation_id = $1 AND tenant_id = $2
                  AND ($10 OR EXISTS (SELECT 1 FROM conversation_members WHERE conversation_id = $1 AND user_id = $3))
                RETURNING last_seq
            ), i AS (
                INSERT INTO im_messages (message_id, conversation_id, tenant_id, sender_id, type, content, reply_to,
                                         client_msg_id, seq, stream_id, stream_state, stream_updated_at, generation)
                SELECT $4, $1, $2, $3, $5, $6::jsonb, $7, $8, c.last_seq, $9,
                       CASE WHEN $9::text IS NULL THEN NULL ELSE 'streaming' END,
                       CASE WHEN $9::text IS NULL AND $11::jsonb IS NULL THEN NULL ELSE now() END, $11::jsonb
                FROM c
                RETURNING *
            )
            SELECT \(Rows.messageColumns("i")),
                   (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = $1) AS members
            FROM i
            """
        do {
            let rows = try await postgres.query(sql, [
                conversationID, tenantID, senderID, messageID, kind, content, replyTo, clientMsgID, streamID,
                kind == "system", generation,
            ])
            guard let row = rows.first else { throw AIIMError.forbidden() }
            let message = try Rows.message(row)
            let members = Rows.stringList(row, "members")
            try await publishCreated(message, tenant: tenantID, members: members)
            return SendResult(message: message, duplicate: false)
        } catch let e as PostgresError where e.isUniqueViolation {
            // A concurrent retry with the same client_msg_id won; answer with its message.
            guard let existing = try await existingMessage(conversationID, senderID, clientMsgID, tenant: tenantID) else { throw e }
            try await publishCreated(existing.message, tenant: tenantID, members: existing.members)
            return SendResult(message: existing.message, duplicate: true)
        }
    }

    /// The message an earlier send with this idempotency key stored, in the requester's tenant
    /// only: a user of another tenant with the same user id never replays (or learns of) it.
    func existingMessage(_ conversationID: String, _ senderID: String, _ clientMsgID: String, tenant: String) async throws
        -> (message: MessageDTO, members: [String])?
    {
        let rows = try await postgres.query("""
            SELECT \(Rows.messageColumns()),
                   (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = $1) AS members
            FROM im_messages WHERE tenant_id = $4 AND conversation_id = $1 AND sender_id = $2 AND client_msg_id = $3
            """, [conversationID, senderID, clientMsgID, tenant])
        guard let row = rows.first else { return nil }
        return (try Rows.message(row), Rows.stringList(row, "members"))
    }

    /// Publishes `message.created`; gateways deliver it to every device of every member in `seq`
    /// order (a re-publish after a retry is dropped by the devices' cursors).
    func publishCreated(_ message: MessageDTO, tenant: String, members: [String]) async throws {
        try await runtime.publish(createdEvent(message, tenant: tenant, members: members))
    }

    func createdEvent(_ message: MessageDTO, tenant: String, members: [String]) throws -> DeliveryEvent {
        var event = DeliveryEvent(tenantID: tenant, recipients: members, conversationId: message.conversationID, seq: message.seq,
                                  frameText: try messageEventText("message.created", message))
        if message.generation?.state.isLive == true { event.generationStart = message.messageID }
        return event
    }

    func history(_ cmd: History) async throws -> MessagePage {
        let conversationID = try Validation.id(cmd.conversationID, field: "conversation_id")
        let limit = try Validation.limit(cmd.limit)
        try await requireMember(cmd.actor, conversationID)
        var before = cmd.beforeSeq
        if let beforeID = try Validation.optionalID(cmd.beforeID, field: "before_id") {
            guard before == nil else { throw AIIMError.validation("give before_seq or before_id, not both") }
            let rows = try await postgres.query(
                "SELECT seq FROM im_messages WHERE message_id = $1 AND conversation_id = $2", [beforeID, conversationID])
            guard let seq: Int64 = rows.first?.optional("seq") else {
                throw AIIMError.validation("before_id must be a message of this conversation")
            }
            before = seq
        }
        return try await page(conversationID, after: cmd.afterSeq, before: before, limit: limit)
    }

    /// One page of history: at most `limit` messages and, past the first, at most `maxBytes`
    /// (default `HISTORY_PAGE_MAX_BYTES`) of their size; a page the byte cap cut has `has_more`,
    /// and paging on from its last (or, scrolling back, first) `seq` gets the rest.
    func page(_ conversationID: String, after: Int64?, before: Int64?, limit: Int, maxBytes: Int? = nil) async throws -> MessagePage {
        let ascending = after != nil
        let sql = """
            SELECT \(Rows.messageColumns()) FROM im_messages
            WHERE conversation_id = $1 AND seq > COALESCE($2::bigint, 0) AND seq < COALESCE($3::bigint, 9223372036854775807)
            ORDER BY seq \(ascending ? "ASC" : "DESC") LIMIT $4
            """
        let rows = try await postgres.query(sql, [conversationID, after, before, limit + 1])
        var messages = try rows.rows.prefix(limit).map { try Rows.message($0) }
        if !ascending { messages.reverse() }
        messages = try await withLiveParts(messages)
        let capped = PageLimits.capped(messages, keepNewest: !ascending, maxBytes: maxBytes ?? pageLimits.historyMaxBytes)
        return MessagePage(conversationID: conversationID, messages: capped.messages, hasMore: rows.rows.count > limit || capped.cut)
    }

    func sync(_ cmd: Sync) async throws -> SyncResult {
        guard cmd.cursors.count <= 500 else { throw AIIMError.validation("at most 500 conversations per sync") }
        let limit = try Validation.limit(cmd.limit, default: 100)
        let ids = try cmd.cursors.keys.sorted().map { try Validation.id($0, field: "conversation_id") }
        let rows = try await postgres.query("""
            SELECT conversation_id FROM conversation_members
            WHERE user_id = $1 AND tenant_id = $2 AND conversation_id = ANY($3::text[])
            """, [cmd.actor.userID, cmd.actor.tenantID, ids])
        let allowed = Set(rows.rows.compactMap { $0.optional("conversation_id", as: String.self) })
        var pages: [MessagePage] = []
        // The whole response is capped too (`SYNC_MAX_BYTES`): past it, the remaining
        // conversations come back empty with `has_more`, for the next sync.
        var room = pageLimits.syncMaxBytes
        for id in ids where allowed.contains(id) {
            guard room > 0 else {
                pages.append(MessagePage(conversationID: id, messages: [], hasMore: true))
                continue
            }
            let p = try await page(id, after: max(0, cmd.cursors[id] ?? 0), before: nil, limit: limit,
                                   maxBytes: min(pageLimits.historyMaxBytes, room))
            room -= p.messages.reduce(0) { $0 + PageLimits.size(of: $1) }
            pages.append(p)
        }
        return SyncResult(conversations: pages)
    }

    func openSession(_ cmd: OpenSession) async throws -> SessionState {
        let rows = try await postgres.query("""
            SELECT c.conversation_id, c.last_seq FROM conversation_members m
            JOIN conversations c ON c.conversation_id = m.conversation_id
            WHERE m.user_id = $1 AND m.tenant_id = $2
            """, [cmd.actor.userID, cmd.actor.tenantID])
        var last: [String: Int64] = [:]
        for r in rows.rows { last[try r.decode("conversation_id")] = try r.decode("last_seq") }
        return SessionState(lastSeq: last)
    }

    /// Edits the sender's own message (not recalled, not a system message or stream in progress).
    func edit(_ cmd: EditMessage) async throws -> MessageDTO {
        let id = try Validation.id(cmd.messageID, field: "message_id")
        let current = try await ownMessage(id, actor: cmd.actor)
        guard current.message.deletedAt == nil else { throw AIIMError(.invalidState, "the message was recalled") }
        guard current.message.type != "system", current.message.stream?.state != "streaming" else {
            throw AIIMError(.invalidState, "this message cannot be edited")
        }
        let content = try Validation.content(cmd.content, type: current.message.type)
        let rows = try await postgres.query("""
            UPDATE im_messages SET content = $2::jsonb, edited_at = now() WHERE message_id = $1
            RETURNING \(Rows.messageColumns())
            """, [id, content])
        let message = try Rows.message(try rows.first.orThrow())
        try await runtime.publish(DeliveryEvent(
            tenantID: cmd.actor.tenantID, recipients: current.members, frameText: try messageEventText("message.updated", message)))
        return message
    }

    /// Recalls the sender's own message: the row stays (so `seq` stays dense) with empty content.
    func recall(_ cmd: DeleteMessage) async throws -> MessageDTO {
        let id = try Validation.id(cmd.messageID, field: "message_id")
        let current = try await ownMessage(id, actor: cmd.actor)
        if current.message.deletedAt != nil { return current.message }
        let rows = try await postgres.query("""
            UPDATE im_messages SET content = '{"recalled": true}'::jsonb, deleted_at = now() WHERE message_id = $1
            RETURNING \(Rows.messageColumns())
            """, [id])
        let message = try Rows.message(try rows.first.orThrow())
        try await runtime.publish(DeliveryEvent(
            tenantID: cmd.actor.tenantID, recipients: current.members,
            frame: conversationEvent(message.conversationID, "message.deleted", [
                "message_id": .string(message.messageID), "seq": .number(Double(message.seq)),
            ])))
        return message
    }

    func ownMessage(_ id: String, actor: Actor) async throws -> (message: MessageDTO, members: [String]) {
        let rows = try await postgres.query("""
            SELECT \(Rows.messageColumns("m")),
                   (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = m.conversation_id) AS members
            FROM im_messages m WHERE m.message_id = $1 AND m.tenant_id = $2
            """, [id, actor.tenantID])
        guard let row = rows.first else { throw AIIMError.notFound("no such message") }
        let members = Rows.stringList(row, "members")
        guard members.contains(actor.userID) else { throw AIIMError.notFound("no such message") }
        let message = try Rows.message(row)
        guard message.senderID == actor.userID else { throw AIIMError.forbidden("only the sender can change a message") }
        return (message, members)
    }

    /// A system message written on behalf of another service (calls).
    func postSystem(_ cmd: PostSystemMessage) async throws -> MessageDTO {
        if let existing = try await existingMessage(cmd.conversationID, cmd.senderID, cmd.clientMsgID, tenant: cmd.tenantID) {
            return existing.message
        }
        return try await insert(
            conversationID: cmd.conversationID, tenantID: cmd.tenantID, senderID: cmd.senderID, kind: "system",
            content: cmd.content, replyTo: nil, clientMsgID: cmd.clientMsgID
        ).message
    }
}

extension Optional {
    func orThrow(_ error: @autoclosure () -> AIIMError = AIIMError.notFound("not found")) throws -> Wrapped {
        guard let self else { throw error() }
        return self
    }
}

/// Byte caps of what one reply may carry, so a history page, a replay page (a gateway pages
/// `subscribe` replays and gap fills through history) or a sync of many conversations of
/// large messages stays small on the bus and in the gateway, besides the count caps.
struct PageLimits: Sendable {
    /// `HISTORY_PAGE_MAX_BYTES`: bytes of messages in one history page. Default 1 MiB.
    var historyMaxBytes = 1 << 20
    /// `SYNC_MAX_BYTES`: bytes of messages in one sync response. Default 4 MiB.
    var syncMaxBytes = 4 << 20

    init() {}

    init(env: Environment) throws {
        historyMaxBytes = try env.int("HISTORY_PAGE_MAX_BYTES", default: historyMaxBytes)
        syncMaxBytes = try env.int("SYNC_MAX_BYTES", default: syncMaxBytes)
        guard historyMaxBytes > 0, syncMaxBytes > 0 else {
            throw ConfigurationError("HISTORY_PAGE_MAX_BYTES and SYNC_MAX_BYTES must be positive")
        }
    }

    /// A message's share of a page: its content as JSON plus its other fields.
    static func size(of message: MessageDTO) -> Int { message.content.jsonString().utf8.count + 256 }

    /// The messages (ascending by `seq`) that fit `maxBytes`, at least one: the oldest ones when
    /// paging forward, the newest ones when the page ends at the newest (or at `before`).
    static func capped(_ messages: [MessageDTO], keepNewest: Bool, maxBytes: Int) -> (messages: [MessageDTO], cut: Bool) {
        var bytes = 0, kept = 0
        for m in keepNewest ? Array(messages.reversed()) : messages {
            let s = Self.size(of: m)
            if kept > 0 && bytes + s > maxBytes { break }
            bytes += s; kept += 1
        }
        guard kept < messages.count else { return (messages, false) }
        return (keepNewest ? Array(messages.suffix(kept)) : Array(messages.prefix(kept)), true)
    }
}
