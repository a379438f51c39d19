import AIIMJSON
import AIIMProtocol

/// The `call.*` frames of `/api/aiim/ws` (docs/CALLS.md), forwarded to the calls service. The
/// reply goes straight back to the sending connection; events for other devices travel as
/// delivery events. Frames of one connection are handled one after another, so signals keep
/// their order.
extension FrameRouter {
    mutating func addCallFrames(backends: Backends) {
        on(CallInitiateFrame.self) { f, context in
            let session = try await backends.call(try Commands.initiateCall(
                conversationID: f.conversationID, toUserID: f.toUserID, callType: f.callType.map { ("call_type", $0) },
                actor: context.actor))
            return CallSessionFrame(type: "call.initiated", session: session, extra: ["to_user_id": session.call.calleeID])
        }
        on("call.accept", CallActionFrame.self) { f, context in
            let session = try await backends.call(AcceptCall(actor: context.actor, callID: try callID(f)))
            return CallSessionFrame(type: "call.accepted", session: session, extra: ["user_id": context.actor.userID])
        }
        on("call.ringing", CallActionFrame.self) { f, context in
            CallAck(event: "call.ringing", try await backends.call(MarkCallRinging(actor: context.actor, callID: try callID(f))))
        }
        on("call.reject", CallActionFrame.self) { f, context in
            CallAck(event: "call.reject", try await backends.call(RejectCall(actor: context.actor, callID: try callID(f))))
        }
        on("call.hangup", CallActionFrame.self) { f, context in
            CallAck(event: "call.hangup", try await backends.call(HangupCall(actor: context.actor, callID: try callID(f))))
        }
        on(CallSignalFrame.self) { f, context in
            // Checked here too, so a malformed signal costs no bus round trip.
            let payload = try CallSignal.validate(f.payload.flatMap { $0.isNull ? nil : $0 })
            _ = try await backends.call(RelayCallSignal(
                actor: context.actor, callID: try Validation.id(f.callID, field: "call_id"),
                toUserID: try Validation.optionalID(f.toUserID, field: "to_user_id"), payload: payload))
            return nil
        }
    }
}

private func callID(_ f: CallActionFrame) throws -> String {
    try Validation.id(f.callID, field: "call_id")
}
