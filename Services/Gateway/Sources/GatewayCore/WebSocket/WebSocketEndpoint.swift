import AIIMProtocol
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOConcurrencyHelpers

/// `GET /api/aiim/ws`: authenticates the upgrade (through the `CredentialGuard`, so failed
/// attempts are limited per client address), admits it under the connection caps, then runs a
/// `WebSocketSession`. A refusal is the route's JSON error response (401, 429, 503), which
/// `UpgradeRefusalMiddleware` puts on the wire.
struct WebSocketEndpoint: Sendable {
    let credentials: CredentialGuard
    let services: SessionServices

    func add(to router: Router<AIIMRequestContext>) {
        router.ws("/api/aiim/ws") { request, context in
            // A plain GET (no `Upgrade: websocket`) would otherwise be admitted and answered
            // with an empty 200; it is a client error with the JSON body (docs/PROTOCOL.md).
            guard Self.isUpgrade(request) else {
                throw AIIMError.badRequest("this route needs a WebSocket upgrade (Upgrade: websocket)")
            }
            let (token, subprotocol) = Self.token(request)
            guard let token else { throw AIIMError(.unauthorized, "authentication required") }
            let client = credentials.clientAddress(peer: context.channel.remoteAddress, headers: request.headers)
            let identity = try await credentials.identity(for: token, client: client)
            let grant = try await services.limits.admit(identity, channel: context.channel)
            var headers: HTTPFields = [:]
            if let subprotocol { headers[.secWebSocketProtocol] = subprotocol }
            // The admitted connection travels to the handler in the request context.
            context.webSocketGrant.withLockedValue { $0 = grant }
            return .upgrade(headers)
        } onUpgrade: { inbound, outbound, context in
            guard let grant = context.requestContext.webSocketGrant.withLockedValue({ $0 }), grant.take() else { return }
            let session = WebSocketSession(grant: grant, channel: context.requestContext.channel, services: services,
                                           logger: context.logger)
            await session.run(inbound: inbound, outbound: outbound)
        }
    }

    /// Whether the request asks for a WebSocket upgrade.
    static func isUpgrade(_ request: Request) -> Bool {
        request.headers[.upgrade]?.lowercased().split(separator: ",")
            .contains { $0.trimmingCharacters(in: .whitespaces) == "websocket" } ?? false
    }

    /// The token of a WebSocket upgrade: `Authorization: Bearer`, `Sec-WebSocket-Protocol:
    /// bearer, <jwt>` (browsers) or `?token=` (as the original). Returns the subprotocol to select.
    static func token(_ request: Request) -> (token: String?, subprotocol: String?) {
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return (String(parts[1]), nil) }
        }
        if let proto = request.headers[.secWebSocketProtocol] {
            let items = proto.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if items.count >= 2, items[0].lowercased() == "bearer" { return (items[1], "bearer") }
            if items.count == 1, items[0].lowercased() != "bearer" { return (items[0], items[0]) }
        }
        return (request.stringQuery("token"), nil)
    }
}

extension HTTPField.Name {
    static let secWebSocketProtocol = Self("Sec-WebSocket-Protocol")!
}
