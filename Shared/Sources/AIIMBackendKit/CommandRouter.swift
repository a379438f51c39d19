import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Logging

/// A backend's command handlers, one per command type (the envelope `type`), instead of a
/// `switch`: the command type fixes the payload a handler decodes and the reply it returns, a
/// type can be registered once only, and a type nobody registered is answered with
/// `unknown_type`, which the consumer dead-letters as poison.
///
///     var router = CommandRouter(service: .messaging)
///     try router.register(History.self) { cmd in try await history(cmd) }
///     let consumer = StreamConsumer(..., handler: router.handler)
public struct CommandRouter: Sendable {
    /// What a handler may need besides its command: the request's envelope header.
    public struct Context: Sendable {
        public var header: EnvelopeHeader
        /// The request's trace (the consumer's span for this hop).
        public var trace: Trace
        /// The stream that wants the reply; nil for a command sent without waiting.
        public var replyTo: String? { header.replyTo }
        /// The request's id, which its reply carries as correlation id.
        public var id: String { header.id }
    }

    /// The reply of a handler that encodes it itself.
    public enum Reply: Sendable {
        /// A JSON payload, already encoded (e.g. spliced from bytes the handler had anyway).
        case encoded([UInt8])
        /// The delivery event the command caused carries the answer (`DeliveryEvent.reply`): the
        /// consumer writes no reply entry.
        case answeredByEvent
    }

    /// Registering a command type twice, or one that another service handles.
    public struct RegistrationError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    typealias Route = @Sendable (Envelope, Context) async throws -> [UInt8]?

    /// The service whose command stream this router serves.
    public let service: ServiceName
    private var routes: [String: Route] = [:]

    public init(service: ServiceName) {
        self.service = service
    }

    /// The command types registered, sorted.
    public var types: [String] { routes.keys.sorted() }

    /// Handles `C` with a typed handler: its result is `C`'s reply.
    public mutating func register<C: BusCommand>(
        _ command: C.Type, _ handler: @escaping @Sendable (C) async throws -> C.Response
    ) throws {
        try add(C.self) { envelope, _ in
            try JSONCoding.encode(try await handler(envelope.decode(C.self)))
        }
    }

    /// Handles `C` with a handler that sees the request's header and returns its reply encoded,
    /// or says the delivery event answered it.
    public mutating func register<C: BusCommand>(
        _ command: C.Type, replying handler: @escaping @Sendable (C, Context) async throws -> Reply
    ) throws {
        try add(C.self) { envelope, context in
            switch try await handler(envelope.decode(C.self), context) {
            case .encoded(let payload): payload
            case .answeredByEvent: []
            }
        }
    }

    private mutating func add<C: BusCommand>(_: C.Type, _ route: @escaping Route) throws {
        guard C.service == service else {
            throw RegistrationError(description: "\(C.type) is a command of \(C.service.rawValue), not of \(service.rawValue)")
        }
        guard routes[C.type] == nil else {
            throw RegistrationError(description: "\(service.rawValue) already handles \(C.type)")
        }
        routes[C.type] = route
    }

    /// What the stream consumer calls for each command. Before any handler runs, the payload
    /// must be storable (`Validation.storable(json:)`: no NUL in any field); a permanent
    /// database error a handler throws becomes its final answer (`PostgresError.clientError`),
    /// so bad input is answered at once instead of being retried as transient.
    public var handler: CommandHandler {
        let routes = self.routes
        let service = self.service
        let logger = Logger(label: "aiim.\(service.rawValue).router")
        return { envelope in
            guard let route = routes[envelope.header.type] else {
                throw AIIMError(.unknownType, "\(service.rawValue) does not handle \(envelope.header.type)")
            }
            try Validation.storable(json: envelope.payload)
            do {
                return try await route(envelope, Context(header: envelope.header, trace: Trace.current ?? envelope.trace))
            } catch {
                throw classifyDatabaseError(error, command: envelope.header.type, logger: logger)
            }
        }
    }
}
