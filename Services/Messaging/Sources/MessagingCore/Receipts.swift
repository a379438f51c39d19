import AIIMBackendKit
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import Foundation

/// Delivered/read receipts as per-member cursors that only move forward.
extension MessagingService {
    func mark(_ cmd: MarkReceipt) async throws -> ReceiptCursor {
        let id = try Validation.id(cmd.conversationID, field: "conversation_id")
        guard cmd.kind == "delivered" || cmd.kind == "read" else { throw AIIMError.validation("kind must be delivered or read") }
        try await requireMember(cmd.actor, id)
        var seq: Int64
        var messageID: String?
        if let mid = try Validation.optionalID(cmd.messageID, field: "message_id") {
            let rows = try await postgres.query(
                "SELECT seq FROM im_messages WHERE message_id = $1 AND conversation_id = $2", [mid, id])
            guard let s: Int64 = rows.first?.optional("seq") else { throw AIIMError.notFound("no such message in this conversation") }
            seq = s
            messageID = mid
        } else if let s = cmd.seq {
            guard s >= 0 else { throw AIIMError.validation("seq must not be negative") }
            seq = s
        } else {
            throw AIIMError.validation("message_id or seq is required")
        }
        let read = cmd.kind == "read"
        // Clamp to what exists; `read` implies `delivered`. RETURNING the old values tells
        // whether a cursor moved (only then is an event sent).
        let rows = try await postgres.query("""
            WITH target AS (SELECT LEAST($3::bigint, last_seq) AS s FROM conversations WHERE conversation_id = $1),
            old AS (SELECT last_read_seq, last_delivered_seq FROM conversation_members
                    WHERE conversation_id = $1 AND user_id = $2 FOR UPDATE)
            UPDATE conversation_members m SET
                last_delivered_seq = GREATEST(m.last_delivered_seq, t.s),
                last_delivered_at = CASE WHEN t.s > m.last_delivered_seq THEN now() ELSE m.last_delivered_at END,
                last_read_seq = CASE WHEN $4 THEN GREATEST(m.last_read_seq, t.s) ELSE m.last_read_seq END,
                last_read_at = CASE WHEN $4 AND t.s > m.last_read_seq THEN now() ELSE m.last_read_at END,
                last_read_message_id = CASE WHEN $4 AND t.s > m.last_read_seq THEN COALESCE($5, m.last_read_message_id)
                                            ELSE m.last_read_message_id END
            FROM target t, old o
            WHERE m.conversation_id = $1 AND m.user_id = $2
            RETURNING m.last_read_seq, m.last_delivered_seq, o.last_read_seq AS old_read, o.last_delivered_seq AS old_delivered,
                      (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = $1) AS members
            """, [id, cmd.actor.userID, seq, read, messageID])
        let row = try rows.first.orThrow(AIIMError.forbidden())
        let cursor = ReceiptCursor(
            conversationID: id, userID: cmd.actor.userID, lastReadSeq: try row.decode("last_read_seq"),
            lastDeliveredSeq: try row.decode("last_delivered_seq"))
        let oldRead: Int64 = try row.decode("old_read")
        let oldDelivered: Int64 = try row.decode("old_delivered")
        seq = read ? cursor.lastReadSeq : cursor.lastDeliveredSeq
        if (read && cursor.lastReadSeq > oldRead) || (!read && cursor.lastDeliveredSeq > oldDelivered) {
            var fields: [String: JSONValue] = ["user_id": .string(cmd.actor.userID)]
            if read {
                fields["last_read_seq"] = .number(Double(cursor.lastReadSeq))
                if let messageID { fields["last_read_message_id"] = .string(messageID) }
            } else {
                fields["seq"] = .number(Double(cursor.lastDeliveredSeq))
                if let messageID { fields["message_id"] = .string(messageID) }
            }
            try await runtime.publish(DeliveryEvent(
                tenantID: cmd.actor.tenantID, recipients: Rows.stringList(row, "members"),
                frame: conversationEvent(id, read ? "receipt.read" : "receipt.delivered", fields),
                excludeConnection: cmd.actor.connectionID))
        }
        return cursor
    }

    /// Per member (except the sender): when the message counted as delivered and read, from
    /// the member's cursors.
    func receipts(_ cmd: GetReceipts) async throws -> ReceiptList {
        let id = try Validation.id(cmd.conversationID, field: "conversation_id")
        let mid = try Validation.id(cmd.messageID, field: "message_id")
        try await requireMember(cmd.actor, id)
        let msg = try await postgres.query(
            "SELECT seq, sender_id FROM im_messages WHERE message_id = $1 AND conversation_id = $2", [mid, id])
        guard let m = msg.first else { throw AIIMError.notFound("no such message in this conversation") }
        let seq: Int64 = try m.decode("seq")
        let sender: String = try m.decode("sender_id")
        let rows = try await postgres.query("""
            SELECT user_id, last_read_seq, last_read_at, last_delivered_seq, last_delivered_at
            FROM conversation_members WHERE conversation_id = $1 AND user_id <> $2 ORDER BY user_id
            """, [id, sender])
        let entries = try rows.rows.map { r -> ReceiptList.Entry in
            let readSeq: Int64 = try r.decode("last_read_seq")
            let deliveredSeq: Int64 = try r.decode("last_delivered_seq")
            let readAt: Date? = readSeq >= seq ? r.optional("last_read_at") : nil
            let deliveredAt: Date? = deliveredSeq >= seq ? r.optional("last_delivered_at") : nil
            return .init(userID: try r.decode("user_id"), deliveredAt: deliveredAt ?? readAt, readAt: readAt)
        }
        return ReceiptList(conversationID: id, messageID: mid, receipts: entries)
    }
}
