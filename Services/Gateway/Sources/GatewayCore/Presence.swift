import AIIMProtocol
import AIIMRedis
import NIOConcurrencyHelpers

/// Online state per user across every gateway: a Redis hash of the user's live connections
/// (`aiim:presence:<tenant>:<user>`), refreshed by each connection's heartbeat and expiring on
/// its own if a gateway dies.
struct PresenceTracker: Sendable {
    let redis: RedisClient
    let instance: String
    /// Life of the hash after its last refresh: `WS_PING_TIMEOUT + WS_PING_INTERVAL` (80 s by
    /// default). Every live connection refreshes it each ping interval, and one silent for the
    /// ping timeout is closed anyway; so after a gateway dies (even SIGKILL) its users' entries
    /// are gone within that time, which is what the calls service watches for.
    let ttlSeconds: Int

    func key(_ tenant: String, _ user: String) -> String { PresenceKeys.user(tenant: tenant, user: user) }

    /// Records a connection; returns how many the user has now on every gateway, this one
    /// included (1: the user came online). The WebSocket upgrade claims before it answers, so
    /// concurrent upgrades of one user each see the others (`WS_MAX_CONNECTIONS_PER_USER`).
    func claim(_ identity: Identity, connectionID: String) async throws -> Int {
        let k = key(identity.tenantID, identity.userID)
        let r = try await redis.pipeline([
            ["HSET", k, connectionID, instance], ["EXPIRE", k, String(ttlSeconds)], ["HLEN", k],
        ])
        return Int(r.last?.int ?? 1)
    }

    /// Forgets a claimed connection that never became a session (refused or abandoned upgrade).
    func drop(_ identity: Identity, connectionID: String) async throws {
        try await redis.command(["HDEL", key(identity.tenantID, identity.userID), connectionID])
    }

    /// Removes a connection; true when no connection of the user is left (the user went offline).
    func disconnected(_ identity: Identity, connectionID: String) async throws -> Bool {
        let k = key(identity.tenantID, identity.userID)
        let r = try await redis.pipeline([["HDEL", k, connectionID], ["HLEN", k]])
        return r.last?.int == 0
    }

    func refresh(_ identity: Identity) async throws {
        try await redis.command(["EXPIRE", key(identity.tenantID, identity.userID), String(ttlSeconds)])
    }

    func online(_ users: [String], tenant: String) async throws -> [Bool] {
        let r = try await redis.pipeline(users.map { ["EXISTS", key(tenant, $0)] })
        return r.map { $0.int == 1 }
    }
}
