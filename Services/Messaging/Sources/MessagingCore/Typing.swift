import AIIMBackendKit
import AIIMJSON
import AIIMProtocol

/// Typing indicators: relayed to the conversation's other members, never stored.
extension MessagingService {
    func typing(_ cmd: Typing) async throws -> Empty {
        let id = try Validation.id(cmd.conversationID, field: "conversation_id")
        try await requireMember(cmd.actor, id)
        let others = try await memberIDs(id).filter { $0 != cmd.actor.userID }
        if !others.isEmpty {
            try await runtime.publish(DeliveryEvent(
                tenantID: cmd.actor.tenantID, recipients: others,
                frame: conversationEvent(id, "typing", ["user_id": .string(cmd.actor.userID), "is_typing": .bool(cmd.isTyping)])))
        }
        return Empty()
    }
}
