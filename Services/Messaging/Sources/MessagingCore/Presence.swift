import AIIMBackendKit
import AIIMJSON
import AIIMPostgres
import AIIMProtocol

/// Presence: a gateway reports a user's first connection and last disconnection; everyone who
/// shares a conversation with them hears of it. Not stored.
extension MessagingService {
    /// Tells everyone who shares a conversation with the user that they came online or left.
    func presence(_ cmd: PresenceChanged) async throws -> Empty {
        let rows = try await postgres.query("""
            SELECT DISTINCT o.user_id FROM conversation_members m
            JOIN conversation_members o ON o.conversation_id = m.conversation_id
            WHERE m.user_id = $1 AND m.tenant_id = $2 AND o.user_id <> $1
            """, [cmd.actor.userID, cmd.actor.tenantID])
        let contacts: [String] = rows.rows.compactMap { $0.optional("user_id") }
        if !contacts.isEmpty {
            try await runtime.publish(DeliveryEvent(
                tenantID: cmd.actor.tenantID, recipients: contacts,
                frame: .object(["type": .string("presence"), "user_id": .string(cmd.actor.userID),
                                "status": .string(cmd.online ? "online" : "offline")])))
        }
        return Empty()
    }
}
