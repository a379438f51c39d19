import AIIMBackendKit
import AIIMJSON
import AIIMPostgres
import AIIMProtocol

/// The batch write behind `SendBatcher`: stores a batch of plain messages and publishes their
/// `message.created` events. It holds only what that needs (the database and the events
/// stream), so the batcher does not reach back into the service that owns it.
struct SendBatchWriter: Sendable {
    let postgres: PostgresClient
    let events: EventPublisher

    /// Writes a batch of plain messages in one transaction and one round trip (a pipeline of two
    /// statements): the conversations' rows are locked in id order (two replicas' batches never
    /// deadlock), then one statement skips strangers and repeats, takes each conversation's next
    /// `seq`s in arrival order and inserts. Events are published in `seq` order in one round trip
    /// before anyone is answered. Returns the messages it stored, by message id.
    ///
    /// One bad row must not fail the statement for everyone: a message whose content the
    /// database would refuse, and a repeat of a `(conversation, sender, client_msg_id)` earlier
    /// in the same batch (it would hit the unique index), are left out before writing; they take
    /// the one-by-one path, which answers the first with `validation_failed` and the second with
    /// the message its original stored.
    func write(_ submitted: [PendingSend]) async throws -> [String: StoredSend] {
        let (batch, contents) = Self.writable(submitted)
        if batch.isEmpty { return [:] }
        let conversations = Array(Set(batch.map(\.conversationID))).sorted()
        let columns: [[String]] = [
            batch.map(\.messageID), batch.map(\.conversationID), batch.map(\.tenantID), batch.map(\.senderID),
            batch.map(\.kind), contents, batch.map(\.clientMsgID),
        ]
        let rows = try await postgres.atomically([
            ("SELECT 1 FROM conversations WHERE conversation_id = ANY($1::text[]) ORDER BY conversation_id FOR UPDATE",
             [conversations]),
            (Self.insertSQL, columns),
        ])[1]
        let sends = Dictionary(batch.map { ($0.messageID, $0) }, uniquingKeysWith: { a, _ in a })
        var stored: [String: StoredSend] = [:]
        var created: [(event: DeliveryEvent, trace: Trace?)] = []
        for row in rows.rows {
            let message = try Rows.message(row)
            let json = try JSONCoding.encode(message)
            stored[message.messageID] = StoredSend(result: SendResult(message: message, duplicate: false), messageJSON: json)
            var event = DeliveryEvent(
                tenantID: try row.decode("tenant_id"), recipients: Rows.stringList(row, "members"),
                conversationId: message.conversationID, seq: message.seq,
                frameText: messageEventText("message.created", conversationID: message.conversationID, messageJSON: json))
            event.reply = sends[message.messageID]?.answer
            created.append((event, sends[message.messageID]?.trace ?? nil))
        }
        created.sort { ($0.event.conversationId ?? "", $0.event.seq ?? 0) < ($1.event.conversationId ?? "", $1.event.seq ?? 0) }
        try await events.publish(created)
        return stored
    }

    /// The sends a batch statement can store, with their content as JSON text: the first of
    /// each `(conversation, sender, client_msg_id)`, and only content free of NUL.
    static func writable(_ batch: [PendingSend]) -> (sends: [PendingSend], contents: [String]) {
        struct Key: Hashable { var conversation, sender, clientMsgID: String }
        var seen = Set<Key>()
        var sends: [PendingSend] = [], contents: [String] = []
        sends.reserveCapacity(batch.count); contents.reserveCapacity(batch.count)
        for send in batch {
            guard seen.insert(Key(conversation: send.conversationID, sender: send.senderID, clientMsgID: send.clientMsgID)).inserted else {
                continue
            }
            let content = send.content.jsonString()
            guard (try? Validation.storable(json: Array(content.utf8))) != nil else { continue }
            sends.append(send); contents.append(content)
        }
        return (sends, contents)
    }

    /// Skips strangers and repeats (scalar subqueries on the unique indexes, so the plan stays an
    /// index lookup even when the tables were empty when it was prepared: `BatchInsertPlanTests`).
    static let insertSQL = """
        WITH input AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                WITH ORDINALITY AS t(message_id, conversation_id, tenant_id, sender_id, type, content, client_msg_id, ord)
        ), accepted AS (
            SELECT i.*, row_number() OVER (PARTITION BY i.conversation_id ORDER BY i.ord) AS n
            FROM input i
            WHERE (SELECT m.tenant_id FROM conversation_members m
                   WHERE m.conversation_id = i.conversation_id AND m.user_id = i.sender_id) = i.tenant_id
              AND (SELECT x.seq FROM im_messages x
                   WHERE x.conversation_id = i.conversation_id AND x.sender_id = i.sender_id
                     AND x.client_msg_id = i.client_msg_id) IS NULL
        ), bumped AS (
            UPDATE conversations c SET last_seq = c.last_seq + a.count, updated_at = now()
            FROM (SELECT conversation_id, count(*) AS count FROM accepted GROUP BY conversation_id) a
            WHERE c.conversation_id = a.conversation_id
            RETURNING c.conversation_id, c.last_seq - a.count AS base
        ), inserted AS (
            INSERT INTO im_messages (message_id, conversation_id, tenant_id, sender_id, type, content, client_msg_id, seq)
            SELECT a.message_id, a.conversation_id, a.tenant_id, a.sender_id, a.type, a.content::jsonb, a.client_msg_id,
                   b.base + a.n
            FROM accepted a JOIN bumped b ON b.conversation_id = a.conversation_id
            RETURNING *
        )
        SELECT \(Rows.messageColumns("inserted")), inserted.tenant_id,
               (SELECT json_agg(user_id) FROM conversation_members WHERE conversation_id = inserted.conversation_id) AS members
        FROM inserted
        """
}
