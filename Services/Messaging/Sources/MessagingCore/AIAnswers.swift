import AIIMBackendKit
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import Foundation
import Logging
import ServiceLifecycle

/// AI answers streamed token by token (`stream.chunk`; "stream" here is the answer, not a Redis
/// stream). The first chunk creates the answer's message (type `ai`, state `streaming`, a `seq`
/// like any message); each chunk is stored with its index and appended to the message's text;
/// the end marks it `completed`. An answer that goes silent without an end is closed as
/// `interrupted` by `SilentAnswerCloser`.
extension MessagingService {
    /// The text a chunk adds: a string, or the `delta`/`text`/`content` string of an object.
    static func text(of chunk: JSONValue?) -> String {
        guard let chunk else { return "" }
        if let s = chunk.stringValue { return s }
        for key in ["delta", "text", "content"] { if let s = chunk[key]?.stringValue { return s } }
        return ""
    }

    func streamChunk(_ cmd: StreamChunk) async throws -> StreamChunkResult {
        let conversationID = try Validation.id(cmd.conversationID, field: "conversation_id")
        let streamID = try Validation.id(cmd.streamID, field: "stream_id")
        if let chunk = cmd.chunk, chunk.jsonString().utf8.count > Validation.maxContentBytes {
            throw AIIMError(.payloadTooLarge, "chunk is larger than \(Validation.maxContentBytes) bytes")
        }
        if let i = cmd.chunkIndex, i < 0 { throw AIIMError.validation("chunk_index must not be negative") }
        guard cmd.chunk != nil || cmd.streamEnd else { throw AIIMError.validation("chunk is required unless stream_end is true") }
        try await requireMember(cmd.actor, conversationID)

        // First chunk: create the message (a concurrent first chunk loses on the unique stream id).
        if try await postgres.query("SELECT 1 FROM im_messages WHERE tenant_id = $1 AND stream_id = $2",
                                    [cmd.actor.tenantID, streamID]).rows.isEmpty {
            do {
                _ = try await insert(
                    conversationID: conversationID, tenantID: cmd.actor.tenantID, senderID: cmd.actor.userID, kind: "ai",
                    content: .object(["text": .string("")]), replyTo: nil, clientMsgID: "stream:" + streamID,
                    streamID: streamID)
            } catch let e as PostgresError where e.isUniqueViolation {}
        }
        let chunk = cmd.chunk
        let actor = cmd.actor
        let outcome: (row: PostgresRow, index: Int?, appended: Bool) = try await postgres.withTransaction { conn in
            let cur = try conn.query("""
                SELECT \(Rows.messageColumns()), tenant_id, stream_bytes,
                       (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = im_messages.conversation_id) AS members
                FROM im_messages WHERE tenant_id = $2 AND stream_id = $1 FOR UPDATE
                """, [streamID, actor.tenantID])
            let row = try cur.first.orThrow(AIIMError.notFound("no such stream"))
            guard try row.decode("conversation_id", as: String.self) == conversationID,
                  try row.decode("sender_id", as: String.self) == actor.userID,
                  try row.decode("tenant_id", as: String.self) == actor.tenantID else {
                throw AIIMError.forbidden("this stream belongs to another sender or conversation")
            }
            let count: Int = try row.decode("stream_chunks")
            let state: String = row.optional("stream_state") ?? "completed"
            var index: Int?
            var appended = false
            if let chunk {
                let i = cmd.chunkIndex ?? count
                if i < count {
                    // A retry of a chunk already stored: idempotent.
                    index = i
                } else {
                    guard state == "streaming" else { throw AIIMError(.invalidState, "the stream has ended (\(state))") }
                    guard i == count else { throw AIIMError.validation("chunk_index \(i) is out of order; expected \(count)") }
                    let settings = generationSettings
                    guard count < settings.maxDeltas else {
                        throw AIIMError(.payloadTooLarge, "the stream already has \(settings.maxDeltas) chunks; end it")
                    }
                    let bytes: Int64 = try row.decode("stream_bytes")
                    guard bytes + Int64(chunk.jsonString().utf8.count) <= Int64(settings.maxBytes) else {
                        throw AIIMError(.payloadTooLarge, "the stream would exceed \(settings.maxBytes) bytes; end it")
                    }
                    try conn.query(
                        "INSERT INTO ai_stream_chunks (tenant_id, stream_id, chunk_index, content) VALUES ($4, $1, $2, $3::jsonb)",
                        [streamID, i, chunk, actor.tenantID])
                    index = i
                    appended = true
                }
            }
            let end = cmd.streamEnd && state == "streaming"
            if appended || end {
                // A chunk only adds its row and counters (the content is not rewritten: cost
                // linear in the stream's size); the end assembles the text from the chunks.
                let updated = try conn.query("""
                    UPDATE im_messages SET
                        content = CASE WHEN $4 THEN jsonb_set(content, '{text}', to_jsonb(\(Self.assembledText("$1", tenant: "$5")))) ELSE content END,
                        stream_chunks = stream_chunks + $3, stream_bytes = stream_bytes + $2, stream_updated_at = now(),
                        stream_state = CASE WHEN $4 THEN 'completed' ELSE stream_state END
                    WHERE tenant_id = $5 AND stream_id = $1
                    RETURNING \(Rows.messageColumns()),
                        (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = im_messages.conversation_id) AS members
                    """, [streamID, appended ? Int64(chunk?.jsonString().utf8.count ?? 0) : 0, appended ? 1 : 0, end, actor.tenantID])
                return (try updated.first.orThrow(), index, appended)
            }
            if cmd.streamEnd == false, !appended, chunk == nil { throw AIIMError.validation("nothing to do") }
            return (row, index, appended)
        }
        let message = try Rows.message(outcome.row)
        let members = Rows.stringList(outcome.row, "members")
        if outcome.appended, let index = outcome.index {
            try await runtime.publish(DeliveryEvent(
                tenantID: actor.tenantID, recipients: members,
                frame: conversationEvent(conversationID, "message.stream_chunk", [
                    "message_id": .string(message.messageID), "stream_id": .string(streamID),
                    "seq": .number(Double(message.seq)), "chunk_index": .number(Double(index)),
                    "chunk": chunk ?? .null, "sender_id": .string(message.senderID),
                    "stream_end": .bool(cmd.streamEnd),
                ])))
        }
        if cmd.streamEnd && message.stream?.state == "completed" {
            try await publishStreamEnd(message, tenant: actor.tenantID, members: members)
        }
        return StreamChunkResult(
            messageID: message.messageID, streamID: streamID, seq: message.seq, chunkIndex: outcome.index,
            streamEnd: message.stream?.state != "streaming", state: message.stream?.state ?? "completed")
    }

    /// SQL for a stream's text so far: its chunks' text in order (`text(of:)` in SQL). Stream ids
    /// are unique per tenant only, so the tenant is part of the key.
    static func assembledText(_ streamIDExpression: String, tenant tenantExpression: String) -> String {
        """
        (SELECT coalesce(string_agg(CASE jsonb_typeof(k.content) WHEN 'string' THEN k.content #>> '{}'
                                    ELSE coalesce(k.content->>'delta', k.content->>'text', k.content->>'content', '') END,
                                    '' ORDER BY k.chunk_index), '')
         FROM ai_stream_chunks k WHERE k.tenant_id = \(tenantExpression) AND k.stream_id = \(streamIDExpression))
        """
    }

    /// A stream still in progress shows its text so far (history, sync).
    func withStreamText(_ message: MessageDTO) async throws -> MessageDTO {
        guard let stream = message.stream, stream.state == "streaming" else { return message }
        let rows = try await postgres.query(
            "SELECT \(Self.assembledText("$1", tenant: "(SELECT tenant_id FROM im_messages WHERE message_id = $2)")) AS text",
            [stream.streamID, message.messageID])
        var m = message
        var content = m.content.objectValue ?? [:]
        content["text"] = .string(rows.first?.optional("text") ?? "")
        m.content = .object(content)
        return m
    }

    func publishStreamEnd(_ message: MessageDTO, tenant: String, members: [String]) async throws {
        try await runtime.publish(DeliveryEvent(
            tenantID: tenant, recipients: members,
            frameText: try messageEventText("message.stream_end", message)))
    }
}

/// Closes AI answers that went silent (no chunk and no end for `timeout`) as `interrupted` and
/// tells the members, once, whichever replica sees them first (`FOR UPDATE SKIP LOCKED`).
struct SilentAnswerCloser: Service {
    let service: MessagingService
    let timeout: Duration
    let interval: Duration

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: interval)
            do { try await closeSilentAnswers() } catch {
                service.runtime.logger.warning("closing silent AI answers failed", metadata: ["error": "\(error)"])
            }
        }
    }

    func closeSilentAnswers() async throws {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let rows = try await service.postgres.query("""
            UPDATE im_messages SET stream_state = 'interrupted', stream_updated_at = now(),
                content = jsonb_set(content, '{text}', to_jsonb(\(MessagingService.assembledText("im_messages.stream_id", tenant: "im_messages.tenant_id"))))
            WHERE message_id IN (
                SELECT message_id FROM im_messages
                WHERE stream_state = 'streaming' AND stream_updated_at < now() - make_interval(secs => $1)
                ORDER BY stream_updated_at LIMIT 100 FOR UPDATE SKIP LOCKED)
            RETURNING \(Rows.messageColumns()), tenant_id,
                (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = im_messages.conversation_id) AS members
            """, [seconds])
        for row in rows.rows {
            let message = try Rows.message(row)
            service.runtime.logger.notice("stream interrupted", metadata: ["stream_id": "\(message.stream?.streamID ?? "")"])
            try await service.publishStreamEnd(message, tenant: try row.decode("tenant_id"), members: Rows.stringList(row, "members"))
        }
    }
}
