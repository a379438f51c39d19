import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import Foundation

/// Column lists and row decoding shared by every messaging query.
enum Rows {
    static let messageFields = [
        "message_id", "conversation_id", "sender_id", "type", "content", "created_at", "seq", "reply_to",
        "client_msg_id", "edited_at", "deleted_at", "stream_id", "stream_state", "stream_chunks", "generation",
    ]

    /// `m.message_id, m.conversation_id, ...`, optionally aliased with a prefix.
    static func messageColumns(_ table: String = "", prefix: String = "") -> String {
        messageFields.map { f in
            let col = table.isEmpty ? f : "\(table).\(f)"
            return prefix.isEmpty ? col : "\(col) AS \(prefix)\(f)"
        }.joined(separator: ", ")
    }

    static func message(_ row: PostgresRow, prefix: String = "") throws -> MessageDTO {
        let p = prefix
        var stream: StreamInfo?
        if let sid: String = row.optional(p + "stream_id") {
            stream = StreamInfo(streamID: sid, state: row.optional(p + "stream_state") ?? "completed",
                                chunkCount: row.optional(p + "stream_chunks") ?? 0)
        }
        var message = MessageDTO(
            messageID: try row.decode(p + "message_id"), conversationID: try row.decode(p + "conversation_id"),
            senderID: try row.decode(p + "sender_id"), type: try row.decode(p + "type"),
            content: try row.decode(p + "content"), createdAt: try row.decode(p + "created_at"),
            seq: try row.decode(p + "seq"), replyTo: row.optional(p + "reply_to"),
            clientMsgID: row.optional(p + "client_msg_id"), editedAt: row.optional(p + "edited_at"),
            deletedAt: row.optional(p + "deleted_at"), stream: stream,
            generation: try row.optional(p + "generation", as: JSONValue.self).map { try JSONCoding.decode(GenerationInfo.self, from: $0) })
        if message.generation?.reasoning == "hidden" { message.content = GenerationParts.hidingReasoning(message.content) }
        return message
    }

    static let conversationColumns = "c.conversation_id, c.type, c.name, c.created_at, c.updated_at, c.last_seq, c.ai_reasoning"

    static func conversation(_ row: PostgresRow) throws -> ConversationDTO {
        ConversationDTO(
            conversationID: try row.decode("conversation_id"), type: try row.decode("type"), name: row.optional("name"),
            createdAt: try row.decode("created_at"), updatedAt: try row.decode("updated_at"),
            lastSeq: try row.decode("last_seq"), settings: ConversationSettings(aiReasoning: row.optional("ai_reasoning")))
    }

    /// A JSON array of strings from `json_agg(...)`.
    static func stringList(_ row: PostgresRow, _ column: String) -> [String] {
        guard case .array(let items)? = row.optional(column, as: JSONValue.self) else { return [] }
        return items.compactMap(\.stringValue)
    }
}
