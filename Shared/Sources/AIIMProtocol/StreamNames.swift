/// The services of AIIM, which name their command streams.
public enum ServiceName: String, Codable, Sendable, CaseIterable {
    case gateway, messaging, media, calls
}

/// Every Redis stream name lives here.
public enum StreamNames {
    /// Commands for one service; all its replicas read it through one consumer group.
    public static func commands(_ service: ServiceName) -> String { "aiim:cmd:\(service.rawValue)" }
    /// Replies addressed to one gateway instance (read only by it).
    public static func replies(instance: String) -> String { "aiim:reply:\(instance)" }
    /// Events for connected devices; every gateway reads all of it and delivers to local sockets.
    public static let events = "aiim:events"
    /// Entries that could not be processed after `maxAttempts`, or could not be decoded at all.
    public static let deadLetter = "aiim:dlq"
    /// Consumer group of a service on its command stream.
    public static func group(_ service: ServiceName) -> String { service.rawValue }
}

/// Redis keys that more than one service reads.
public enum PresenceKeys {
    /// The hash of a user's live WebSocket connections on every gateway (field: connection id,
    /// value: gateway instance). Its gateways refresh its TTL while a connection lives, so it
    /// disappears by itself when they die (SIGKILL included); the calls service watches it.
    public static func user(tenant: String, user: String) -> String { "aiim:presence:\(tenant):\(user)" }
}
