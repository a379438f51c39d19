import AIIMJSON
import AIIMProtocol
import Hummingbird

/// `/api/aiim/calls`: the original's call routes, forwarded to the calls service (docs/CALLS.md).
struct CallsController {
    let backends: Backends

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("initiate", use: initiate)
        routes.post("{call_id}/accept", use: accept)
        routes.post("{call_id}/ringing") { _, context in
            try await backends.call(MarkCallRinging(actor: context.actor, callID: try callID(context)))
        }
        routes.post("{call_id}/reject") { _, context in
            try await backends.call(RejectCall(actor: context.actor, callID: try callID(context)))
        }
        routes.post("{call_id}/hangup") { _, context in
            try await backends.call(HangupCall(actor: context.actor, callID: try callID(context)))
        }
        routes.get("{call_id}/status") { _, context in
            try await backends.call(GetCall(actor: context.actor, callID: try callID(context)))
        }
        routes.get("conversation/{conversation_id}/history", use: history)
        routes.get("ice-configuration") { _, context in
            try await backends.call(GetICEConfiguration(actor: context.actor))
        }
        return routes
    }

    /// The call's fields, its ICE configuration, and `created_at` (= `start_time`) as the original.
    @Sendable func initiate(_ request: Request, context: AuthenticatedContext) async throws -> JSONResponse {
        let body = try await request.decode(as: InitiateCallBody.self, context: context)
        let type: (key: String, value: JSONValue)? =
            body.callType.flatMap { $0.isNull ? nil : ("call_type", $0) } ?? body.type.flatMap { $0.isNull ? nil : ("type", $0) }
        let session = try await backends.call(try Commands.initiateCall(
            conversationID: body.conversationID, toUserID: body.toUserID, callType: type, actor: context.actor))
        var out = try Self.fields(session)
        out["created_at"] = out["start_time"]
        return JSONResponse(value: .object(out))
    }

    @Sendable func accept(_ request: Request, context: AuthenticatedContext) async throws -> JSONResponse {
        let session = try await backends.call(AcceptCall(actor: context.actor, callID: try callID(context)))
        return JSONResponse(value: .object(try Self.fields(session)))
    }

    @Sendable func history(_ request: Request, context: AuthenticatedContext) async throws -> CallHistoryPage {
        let conversationID = try Validation.id(context.parameters.get("conversation_id"), field: "conversation_id")
        let offset = try request.intQuery("offset") ?? 0
        guard (0...1_000_000).contains(offset) else { throw AIIMError.validation("offset must be 0-1000000") }
        return try await backends.call(ListCallHistory(
            actor: context.actor, conversationID: conversationID,
            limit: try Validation.limit(request.intQuery("limit"), default: 20), offset: offset))
    }

    func callID(_ context: AuthenticatedContext) throws -> String {
        try Validation.id(context.parameters.get("call_id"), field: "call_id")
    }

    static func fields(_ session: CallSession) throws -> [String: JSONValue] {
        guard case .object(var fields) = try JSONValue(encoding: session.call) else { throw AIIMError.internalError }
        fields["ice_configuration"] = try JSONValue(encoding: session.iceConfiguration)
        return fields
    }
}
