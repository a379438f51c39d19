import AIIMProtocol
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOConcurrencyHelpers

/// `GET /api/aiim/ws`: authenticates the upgrade, then runs a `WebSocketSession`.
struct WebSocketEndpoint: Sendable {
    let credentials: Credentials
    let services: SessionServices

    func add(to router: Router<AIIMRequestContext>) {
        router.ws("/api/aiim/ws") { request, context in
            let (token, subprotocol) = Self.token(request)
            guard let token else { throw AIIMError(.unauthorized, "authentication required") }
            let identity = try await credentials.identity(for: token)
            var headers: HTTPFields = [:]
            if let subprotocol { headers[.secWebSocketProtocol] = subprotocol }
            // The identity travels to the handler in the request context.
            context.webSocketIdentity.withLockedValue { $0 = identity }
            return .upgrade(headers)
        } onUpgrade: { inbound, outbound, context in
            guard let identity = context.requestContext.webSocketIdentity.withLockedValue({ $0 }) else { return }
            let session = WebSocketSession(identity: identity, channel: context.requestContext.channel, services: services,
                                           logger: context.logger)
            try await session.run(inbound: inbound, outbound: outbound)
        }
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
