import AIIMProtocol
import AIIMRedis

/// The backend services as the gateway calls them: a command over the bus, answered within the
/// gateway's timeout (`BUS_TIMEOUT_MS`) unless the command needs longer.
public struct Backends: Sendable {
    public let bus: BusClient
    public let timeout: Duration

    /// Sends `command` to the service that handles it and waits for its reply.
    public func call<C: BusCommand>(_ command: C, timeout: Duration? = nil) async throws -> C.Response {
        try await bus.request(command, timeout: timeout ?? self.timeout)
    }

    /// Posts `command` without waiting for a reply (typing, presence).
    public func post<C: BusCommand>(_ command: C) async throws {
        try await bus.send(command)
    }
}
