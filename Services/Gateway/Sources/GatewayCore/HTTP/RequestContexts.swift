import AIIMProtocol
import Hummingbird
import HummingbirdWebSocket
import NIOConcurrencyHelpers
import NIOCore

/// The context of every request before authentication: the caller's identity once
/// `AuthMiddleware` has read a bearer token, and what a WebSocket upgrade needs.
public struct AIIMRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AuthMiddleware` from `Authorization: Bearer`; nil for anonymous requests.
    public var identity: Identity?
    public let webSocket: WebSocketHandlerReference<Self>
    /// Carries the connection admitted at the upgrade (identity, caps) into the WebSocket handler.
    let webSocketGrant = NIOLockedValueBox<ConnectionGrant?>(nil)
    /// The connection's NIO channel: after an upgrade, WebSocket frames are written to it
    /// directly, several per flush (`SocketOutbox`).
    let channel: any Channel
    /// Largest body a route decodes (`MAX_BODY_BYTES`, set by `BodyLimitMiddleware`).
    public var maxUploadSize = 1024 * 1024

    public init(source: Source) {
        coreContext = .init(source: source)
        webSocket = .init()
        channel = source.channel
    }

    public var requestDecoder: JSONBodyDecoder { JSONBodyDecoder() }
    public var responseEncoder: JSONBodyEncoder { JSONBodyEncoder() }
}

/// The context of an authenticated route: its identity is not optional. Creating it from a
/// request without one fails with `unauthorized` (401), so no route checks it by hand.
public struct AuthenticatedContext: ChildRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let identity: Identity
    public let maxUploadSize: Int

    public init(context: AIIMRequestContext) throws {
        guard let identity = context.identity else { throw AIIMError(.unauthorized, "authentication required") }
        coreContext = context.coreContext
        self.identity = identity
        maxUploadSize = context.maxUploadSize
    }

    /// The caller as the backends see it.
    public var actor: Actor { identity.actor() }

    public var requestDecoder: JSONBodyDecoder { JSONBodyDecoder() }
    public var responseEncoder: JSONBodyEncoder { JSONBodyEncoder() }
}
