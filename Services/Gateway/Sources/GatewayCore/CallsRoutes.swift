import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Foundation
import Hummingbird

/// Calls: REST routes of the original (`/api/aiim/calls/...`) and the `call.*` WebSocket
/// frames, both forwarded to the calls service. Field names are the original's (docs/CALLS.md).
extension Gateway {
    /// `/api/aiim/calls/...`: forwarded to the calls service over the bus.
    func addCallRoutes(to api: RouterGroup<AIIMRequestContext>) {
        let calls = api.group("calls")
        calls.post("initiate") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            let session = try await bus.request(try initiateCallCommand(body, actor: actor, typeKeys: ["call_type", "type"]),
                                                timeout: busTimeout)
            var out = try callFields(session.call)
            out["ice_configuration"] = try JSONValue(encoding: session.iceConfiguration)
            out["created_at"] = out["start_time"]
            return try json(JSONValue.object(out))
        }
        calls.post("{call_id}/accept") { _, context in
            let actor = try context.requireIdentity().actor()
            let session = try await bus.request(AcceptCall(actor: actor, callID: try callID(context)), timeout: busTimeout)
            var out = try callFields(session.call)
            out["ice_configuration"] = try JSONValue(encoding: session.iceConfiguration)
            return try json(JSONValue.object(out))
        }
        calls.post("{call_id}/ringing") { _, context in
            let actor = try context.requireIdentity().actor()
            return try json(try await bus.request(MarkCallRinging(actor: actor, callID: try callID(context)), timeout: busTimeout))
        }
        calls.post("{call_id}/reject") { _, context in
            let actor = try context.requireIdentity().actor()
            return try json(try await bus.request(RejectCall(actor: actor, callID: try callID(context)), timeout: busTimeout))
        }
        calls.post("{call_id}/hangup") { _, context in
            let actor = try context.requireIdentity().actor()
            return try json(try await bus.request(HangupCall(actor: actor, callID: try callID(context)), timeout: busTimeout))
        }
        calls.get("{call_id}/status") { _, context in
            let actor = try context.requireIdentity().actor()
            return try json(try await bus.request(GetCall(actor: actor, callID: try callID(context)), timeout: busTimeout))
        }
        calls.get("conversation/{conversation_id}/history") { request, context in
            let actor = try context.requireIdentity().actor()
            let conversationID = try Validation.id(context.parameters.get("conversation_id"), field: "conversation_id")
            let offset = try request.intQuery("offset") ?? 0
            guard (0...1_000_000).contains(offset) else { throw AIIMError.validation("offset must be 0-1000000") }
            let cmd = ListCallHistory(actor: actor, conversationID: conversationID,
                                      limit: try Validation.limit(request.intQuery("limit"), default: 20), offset: offset)
            return try json(try await bus.request(cmd, timeout: busTimeout))
        }
        calls.get("ice-configuration") { _, context in
            let actor = try context.requireIdentity().actor()
            return try json(try await bus.request(GetICEConfiguration(actor: actor), timeout: busTimeout))
        }
    }

    /// Handles a `call.*` WebSocket frame from `actor`; returns the frame to send straight back
    /// to that connection, if any. Events for other devices travel as `DeliveryEvent`s.
    /// Frames of one connection must be handled one after another: signals keep their order.
    func handleCallFrame(_ type: String, _ frame: JSONValue, actor: Actor) async throws -> JSONValue? {
        let body = try JSONObject(frame)
        switch type {
        case "call.initiate":
            let session = try await bus.request(try initiateCallCommand(body, actor: actor, typeKeys: ["call_type"]),
                                                timeout: busTimeout)
            var out = try callFields(session.call)
            out["type"] = .string("call.initiated")
            out["to_user_id"] = .string(session.call.calleeID)
            out["ice_configuration"] = try JSONValue(encoding: session.iceConfiguration)
            return .object(out)
        case "call.accept":
            let session = try await bus.request(AcceptCall(actor: actor, callID: try callID(body)), timeout: busTimeout)
            var out = try callFields(session.call)
            out["type"] = .string("call.accepted")
            out["user_id"] = .string(actor.userID)
            out["ice_configuration"] = try JSONValue(encoding: session.iceConfiguration)
            return .object(out)
        case "call.ringing":
            return try callAck("call.ringing", try await bus.request(MarkCallRinging(actor: actor, callID: try callID(body)),
                                                                     timeout: busTimeout))
        case "call.reject":
            return try callAck("call.reject", try await bus.request(RejectCall(actor: actor, callID: try callID(body)),
                                                                    timeout: busTimeout))
        case "call.hangup":
            return try callAck("call.hangup", try await bus.request(HangupCall(actor: actor, callID: try callID(body)),
                                                                    timeout: busTimeout))
        case "call.webrtc.signal":
            // Checked here too, so a malformed signal costs no bus round trip.
            let payload = try CallSignal.validate(body["payload"])
            let cmd = RelayCallSignal(actor: actor, callID: try callID(body),
                                      toUserID: try Validation.optionalID(body.optionalString("to_user_id"), field: "to_user_id"),
                                      payload: payload)
            _ = try await bus.request(cmd, timeout: busTimeout)
            return nil
        default:
            throw AIIMError(.unknownType, "unknown frame type '\(type.prefix(64))'")
        }
    }

    /// `conversation_id`, optional `to_user_id`, and the call type under the first of `typeKeys`
    /// present (REST: `call_type` or the original's `type`; WebSocket: `call_type`). Default audio.
    private func initiateCallCommand(_ body: JSONObject, actor: Actor, typeKeys: [String]) throws -> InitiateCall {
        let conversationID = try Validation.id(body.optionalString("conversation_id"), field: "conversation_id")
        let callee = try Validation.optionalID(body.optionalString("to_user_id"), field: "to_user_id")
        var callType = CallType.audio
        if let key = typeKeys.first(where: { body[$0] != nil }) {
            guard let raw = try? body.optionalString(key), let t = CallType(rawValue: raw) else {
                throw AIIMError.validation("\(key) must be 'audio' or 'video'")
            }
            callType = t
        }
        return InitiateCall(actor: actor, conversationID: conversationID, calleeID: callee, callType: callType)
    }
}

/// `{"type":"ack","event":"call.hangup","call_id","status","version"}`: a WebSocket action went through.
private func callAck(_ event: String, _ call: CallDTO) throws -> JSONValue {
    .object([
        "type": .string("ack"), "event": .string(event), "call_id": .string(call.callID),
        "conversation_id": .string(call.conversationID), "status": .string(call.status.rawValue),
        "version": .number(Double(call.version)),
    ])
}

private func callID(_ context: AIIMRequestContext) throws -> String {
    try Validation.id(context.parameters.get("call_id"), field: "call_id")
}

private func callID(_ body: JSONObject) throws -> String {
    try Validation.id(body.optionalString("call_id"), field: "call_id")
}

private func callFields(_ call: CallDTO) throws -> [String: JSONValue] {
    guard case .object(let fields) = try JSONValue(encoding: call) else { throw AIIMError.internalError }
    return fields
}
