import AIIMJSON
import AIIMProtocol
import Foundation

/// Something to publish after a transition commits: a frame for devices, or a system message
/// for the conversation (sent to the messaging service). Stored in `call_outbox` as JSON.
struct OutboxItem: Codable, Sendable, Equatable {
    var deliver: DeliveryEvent?
    var system: PostSystemMessage?

    static func deliver(_ e: DeliveryEvent) -> OutboxItem { OutboxItem(deliver: e, system: nil) }
    static func system(_ m: PostSystemMessage) -> OutboxItem { OutboxItem(deliver: nil, system: m) }

    static func == (a: OutboxItem, b: OutboxItem) -> Bool {
        a.deliver?.frame == b.deliver?.frame && a.deliver?.recipients == b.deliver?.recipients
            && a.deliver?.excludeConnection == b.deliver?.excludeConnection
            && a.system?.clientMsgID == b.system?.clientMsgID && a.system?.content == b.system?.content
    }
}

/// Which frames each transition sends to whom (docs/CALLS.md lists them). Pure: the store
/// calls it inside the transition's transaction and writes the result to the outbox.
///
/// Every transition sends `call.status_changed` to every device of both parties and leaves a
/// system message, except `ringing` (a device acknowledgement, not conversation history).
/// Only the callee's devices get `call.incoming`, with the callee's own TURN credentials.
enum CallEvents {
    /// A new call: `call.incoming` to the callee (initiated), or only the final state (busy).
    static func created(_ call: CallRecord, calleeICE: ICEConfiguration) throws -> [OutboxItem] {
        var items: [OutboxItem] = []
        if call.status == .initiated {
            var incoming: [String: JSONValue] = [
                "type": .string("call.incoming"), "call_id": .string(call.callID), "conversation_id": .string(call.conversationID),
                "from_user_id": .string(call.initiatorID), "to_user_id": .string(call.calleeID),
                "call_type": .string(call.callType.rawValue), "status": .string(call.status.rawValue),
                "version": .number(Double(call.version)), "start_time": .string(Timestamp.iso8601(call.startTime)),
            ]
            incoming["ice_configuration"] = try JSONValue(encoding: calleeICE)
            items.append(.deliver(DeliveryEvent(tenantID: call.tenantID, recipients: [call.calleeID], frame: .object(incoming))))
        }
        items.append(try statusChanged(call, previous: nil, by: call.initiatorID))
        items.append(system(call, by: call.initiatorID))
        return items
    }

    /// A transition of an existing call by `actor` (nil: the timer).
    static func transition(from old: CallRecord, to new: CallRecord, actor: Actor?) throws -> [OutboxItem] {
        var items: [OutboxItem] = []
        if new.status == .answered {
            let accepted: JSONValue = .object([
                "type": .string("call.accepted"), "call_id": .string(new.callID), "conversation_id": .string(new.conversationID),
                "user_id": .string(new.calleeID), "status": .string(new.status.rawValue),
                "version": .number(Double(new.version)),
                "answer_time": new.answerTime.map { .string(Timestamp.iso8601($0)) } ?? .null,
            ])
            // The accepting device has its reply; the caller's devices and the callee's others learn here.
            items.append(.deliver(DeliveryEvent(tenantID: new.tenantID, recipients: [new.initiatorID, new.calleeID], frame: accepted,
                                                excludeConnection: actor?.connectionID)))
            let elsewhere: JSONValue = .object([
                "type": .string("call.accepted_elsewhere"), "call_id": .string(new.callID),
                "conversation_id": .string(new.conversationID), "user_id": .string(new.calleeID),
                "version": .number(Double(new.version)),
            ])
            items.append(.deliver(DeliveryEvent(tenantID: new.tenantID, recipients: [new.calleeID], frame: elsewhere,
                                                excludeConnection: actor?.connectionID)))
        }
        items.append(try statusChanged(new, previous: old.status, by: actor?.userID))
        if new.status != .ringing {
            items.append(system(new, by: actor?.userID ?? new.initiatorID))
        }
        return items
    }

    /// `call.status_changed` with the whole call, to every device of both parties.
    static func statusChanged(_ call: CallRecord, previous: CallStatus?, by userID: String?) throws -> OutboxItem {
        guard case .object(var frame) = try JSONValue(encoding: call.dto) else { throw AIIMError.internalError }
        frame["type"] = .string("call.status_changed")
        frame["previous_status"] = previous.map { .string($0.rawValue) } ?? .null
        frame["user_id"] = userID.map { .string($0) } ?? .null
        return .deliver(DeliveryEvent(tenantID: call.tenantID, recipients: [call.initiatorID, call.calleeID], frame: .object(frame)))
    }

    /// A participant's last connection closed (`disconnected`) or came back: told to the peer.
    static func presence(_ call: CallRecord, userID: String, disconnected: Bool, grace: Double) -> OutboxItem {
        var frame: [String: JSONValue] = [
            "type": .string(disconnected ? "call.participant_disconnected" : "call.participant_reconnected"),
            "call_id": .string(call.callID), "conversation_id": .string(call.conversationID), "user_id": .string(userID),
        ]
        if disconnected { frame["grace_sec"] = .number(grace) }
        return .deliver(DeliveryEvent(tenantID: call.tenantID, recipients: [call.peer(of: userID)], frame: .object(frame)))
    }

    /// `call.webrtc.signal` for the addressee's devices only.
    static func signal(_ call: CallRecord, from: String, to: String, payload: JSONValue) -> DeliveryEvent {
        DeliveryEvent(tenantID: call.tenantID, recipients: [to], frame: .object([
            "type": .string("call.webrtc.signal"), "call_id": .string(call.callID), "conversation_id": .string(call.conversationID),
            "from_user_id": .string(from), "to_user_id": .string(to), "payload": payload,
        ]))
    }

    /// The conversation's record of the call: started, answered, or ended (with its outcome).
    static func system(_ call: CallRecord, by senderID: String) -> OutboxItem {
        let event = switch call.status {
        case .initiated, .ringing: "call.started"
        case .answered: "call.answered"
        default: "call.ended"
        }
        var content: [String: JSONValue] = [
            "event": .string(event), "call_id": .string(call.callID), "call_type": .string(call.callType.rawValue),
            "status": .string(call.status.rawValue), "initiator_id": .string(call.initiatorID),
            "callee_id": .string(call.calleeID), "text": .string(text(call)),
        ]
        content["duration_sec"] = call.durationSec.map { .number(Double($0)) } ?? .null
        return .system(PostSystemMessage(
            tenantID: call.tenantID, conversationID: call.conversationID, senderID: senderID,
            content: .object(content), clientMsgID: "call:\(call.callID):\(event)"))
    }

    /// English text for clients that do not render call events themselves.
    static func text(_ call: CallRecord) -> String {
        let kind = call.callType == .video ? "video call" : "audio call"
        let Kind = call.callType == .video ? "Video call" : "Audio call"
        switch call.status {
        case .initiated, .ringing: return "\(Kind) started"
        case .answered: return "\(Kind) answered"
        case .completed: return "\(Kind) ended (\(duration(call.durationSec ?? 0)))"
        case .missed: return "Missed \(kind)"
        case .rejected: return "\(Kind) declined"
        case .cancelled: return "\(Kind) cancelled"
        case .busy: return "\(Kind) not connected: busy"
        case .failed:
            return call.durationSec.map { "\(Kind) dropped (\(duration($0)))" } ?? "\(Kind) failed: connection lost"
        }
    }

    /// `m:ss`, or `h:mm:ss` from an hour.
    static func duration(_ seconds: Int) -> String {
        let h = seconds / 3600, m = (seconds % 3600) / 60, s = seconds % 60
        return h > 0 ? String(format: "%d:%02d:%02d", h, m, s) : String(format: "%d:%02d", m, s)
    }
}
