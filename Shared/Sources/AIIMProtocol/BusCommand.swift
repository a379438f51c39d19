/// A command one service sends another and the reply it gets back.
public protocol BusCommand: Codable, Sendable {
    associatedtype Response: Codable & Sendable
    /// Envelope `type`, e.g. `messaging.send`.
    static var type: String { get }
    /// The service that handles it.
    static var service: ServiceName { get }
}

/// The empty reply.
public struct Empty: Codable, Sendable, Equatable { public init() {} }

/// Health of the bus itself: answered by any replica of a service.
public struct PingCommand: BusCommand {
    public typealias Response = Pong
    public static let type = "ping"
    public static let service = ServiceName.messaging
    public var note: String?
    public init(note: String? = nil) { self.note = note }
}

public struct Pong: Codable, Sendable {
    public var service: String
    public var instance: String
    public var note: String?
    public init(service: String, instance: String, note: String?) {
        self.service = service; self.instance = instance; self.note = note
    }
}
