import AIIMJSON
import AIIMProtocol
import Logging

/// What a frame handler knows besides its frame: the device that sent it and the frame as it
/// came (for fields a reply echoes).
struct FrameContext: Sendable {
    let connection: DeviceConnection
    let frame: [String: JSONValue]
    let logger: Logger
    var actor: Actor { connection.actor }
}

/// The WebSocket frame types this gateway handles, each decoded into its typed frame
/// (`ClientFrames.swift`) before its handler runs. A type is registered once.
struct FrameRouter: Sendable {
    typealias Handler = @Sendable (JSONValue, FrameContext) async throws -> (any ServerFrame)?
    private var handlers: [String: Handler] = [:]

    /// Handles the frame's own type with `handler`; nil means no reply frame.
    mutating func on<F: ClientFrame>(
        _ frame: F.Type, _ handler: @escaping @Sendable (F, FrameContext) async throws -> (any ServerFrame)?
    ) {
        on(F.type, frame, handler)
    }

    /// Handles `type`, decoded as `F` (several types share a frame shape), with `handler`.
    mutating func on<F: ClientFrame>(
        _ type: String, _ frame: F.Type,
        _ handler: @escaping @Sendable (F, FrameContext) async throws -> (any ServerFrame)?
    ) {
        precondition(handlers[type] == nil, "WebSocket frame type '\(type)' is registered twice")
        handlers[type] = { value, context in try await handler(try JSONBodyDecoder.decode(F.self, from: value), context) }
    }

    var types: Set<String> { Set(handlers.keys) }

    func handler(for type: String) -> Handler? { handlers[type] }
}
