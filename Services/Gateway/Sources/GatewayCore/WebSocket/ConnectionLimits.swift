import AIIMProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The WebSocket connection caps, checked at the upgrade: `WS_MAX_CONNECTIONS` sockets on this
/// gateway (one more gets 503 `unavailable`) and `WS_MAX_CONNECTIONS_PER_USER` for one user on
/// every gateway together (one more gets 429 `rate_limited`), counted by the presence hash.
final class ConnectionLimits: Sendable {
    let maxPerGateway: Int
    let maxPerUser: Int
    let presence: PresenceTracker
    let logger: Logger
    private let open = NIOLockedValueBox(0)

    init(maxPerGateway: Int, maxPerUser: Int, presence: PresenceTracker, logger: Logger) {
        self.maxPerGateway = maxPerGateway
        self.maxPerUser = maxPerUser
        self.presence = presence
        self.logger = logger
    }

    /// Sockets admitted on this gateway and not yet gone.
    var count: Int { open.withLockedValue { $0 } }

    /// Admits one connection of `identity` on `channel`, or throws the refusal. The grant holds a
    /// slot and the presence entry until its session ends, or until the channel closes if the
    /// upgrade never became a session.
    func admit(_ identity: Identity, channel: any Channel) async throws -> ConnectionGrant {
        let reserved = open.withLockedValue { n -> Bool in
            guard n < maxPerGateway else { return false }
            n += 1
            return true
        }
        guard reserved else {
            throw AIIMError(.unavailable, "this gateway holds its maximum of \(maxPerGateway) connections; retry later or on another gateway")
        }
        let connectionID = UUIDs.make()
        var count = 1
        do {
            count = try await presence.claim(identity, connectionID: connectionID)
        } catch {
            // Redis is away: the socket still works as far as it can (as before the caps).
            logger.warning("presence claim failed", metadata: ["error": "\(error)"])
        }
        if count > maxPerUser {
            try? await presence.drop(identity, connectionID: connectionID)
            releaseSlot()
            throw AIIMError(.rateLimited, "more than \(maxPerUser) WebSocket connections for this user; close one first")
        }
        let grant = ConnectionGrant(identity: identity, connectionID: connectionID, firstOfUser: count == 1, limits: self)
        channel.closeFuture.whenComplete { _ in
            guard grant.abandon() else { return }
            Task { try? await self.presence.drop(identity, connectionID: connectionID) }
        }
        return grant
    }

    fileprivate func releaseSlot() { open.withLockedValue { $0 -= 1 } }
}

/// One admitted WebSocket connection: its id, whether it brought the user online, and its slot
/// under the caps. Reserved at the upgrade, taken by the session, released exactly once.
final class ConnectionGrant: Sendable {
    enum State { case reserved, taken, released }

    let identity: Identity
    let connectionID: String
    /// The user had no other connection on any gateway: the session announces them online.
    let firstOfUser: Bool
    private let limits: ConnectionLimits
    private let state = NIOLockedValueBox(State.reserved)

    fileprivate init(identity: Identity, connectionID: String, firstOfUser: Bool, limits: ConnectionLimits) {
        self.identity = identity
        self.connectionID = connectionID
        self.firstOfUser = firstOfUser
        self.limits = limits
    }

    /// The session starts; false when the connection was already given up.
    func take() -> Bool {
        state.withLockedValue { s in
            guard s == .reserved else { return false }
            s = .taken
            return true
        }
    }

    /// The session is over: the slot is free (its presence entry is the session's to remove).
    func finish() {
        let release = state.withLockedValue { s -> Bool in
            guard s == .taken else { return false }
            s = .released
            return true
        }
        if release { limits.releaseSlot() }
    }

    /// The channel closed before a session took the grant: frees the slot; true when the
    /// caller must also remove the presence entry.
    fileprivate func abandon() -> Bool {
        let release = state.withLockedValue { s -> Bool in
            guard s == .reserved else { return false }
            s = .released
            return true
        }
        if release { limits.releaseSlot() }
        return release
    }
}
