import AIIMJSON
import AIIMProtocol
import Foundation
import HummingbirdWebSocket
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// Close codes of `/api/aiim/ws` (docs/PROTOCOL.md).
enum CloseCode {
    /// No frame (not even `pong`) within `WS_PING_TIMEOUT`.
    static let pingTimeout = 4000
    /// The device could not keep up: its send queue (`WS_SEND_QUEUE`, `WS_SEND_QUEUE_BYTES`) or
    /// the events held back for it while a gap is filled overflowed. Reconnect and resume by `seq`.
    static let slowConsumer = 4001
    /// The token the socket was opened with expired (JWT `exp`). Reconnect with a fresh token.
    static let tokenExpired = 4002
    /// The API key the socket was opened with was revoked. Do not reconnect with it.
    static let credentialRevoked = 4003
    /// The gateway is shutting down; reconnect (to another replica).
    static let goingAway = 1001
}

/// What every WebSocket session of this gateway shares.
struct SessionServices: Sendable {
    let config: GatewayConfiguration
    let backends: Backends
    let hub: DeliveryHub
    let presence: PresenceTracker
    let frames: FrameRouter
    let limiter: FrameRateLimiter
    let limits: ConnectionLimits
    /// `generation.delta` frames have their own budget per answer (`GENERATION_DELTA_FRAMES_PER_SEC`).
    let generationLimiter: FrameRateLimiter
}

/// One device's WebSocket connection from upgrade to close: its cursors, the `connected` frame,
/// presence, the heartbeat, and the frame loop. Frames to the device go through the connection's
/// `SocketOutbox`; `outbound` only closes.
struct WebSocketSession {
    let services: SessionServices
    let grant: ConnectionGrant
    let connection: DeviceConnection
    let logger: Logger

    init(grant: ConnectionGrant, channel: any Channel, services: SessionServices, logger: Logger) {
        self.services = services
        self.grant = grant
        let identity = grant.identity
        connection = DeviceConnection(id: grant.connectionID, identity: identity, channel: channel,
                                      queueLimit: services.config.sendQueueLimit, queueBytes: services.config.sendQueueBytes)
        var logger = logger
        logger[metadataKey: "connection_id"] = "\(connection.id)"
        logger[metadataKey: "user_id"] = "\(identity.userID)"
        self.logger = logger
    }

    var config: GatewayConfiguration { services.config }

    func run(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async {
        services.hub.add(connection)

        // Cursors first, so live events are ordered from the start.
        do {
            let session = try await services.backends.call(OpenSession(actor: connection.actor))
            connection.ordering.withLockedValue { $0.start(from: session.lastSeq) }
        } catch {
            logger.warning("session set-up failed", metadata: ["error": "\(error)"])
        }
        send(ConnectedFrame(connectionID: connection.id, userID: connection.identity.userID, pingInterval: config.pingIntervalSeconds))
        await presenceChanged(connected: true)

        let closeCode: Int? = await withTaskGroup(of: Int?.self) { group in
            group.addTask {
                for await _ in connection.outbox.finished {}
                return connection.revoked ? CloseCode.credentialRevoked : connection.overflowed ? CloseCode.slowConsumer : nil
            }
            group.addTask { await heartbeat() }
            if let expiry = connection.identity.expiresAt {
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(Int64(max(0, expiry.timeIntervalSinceNow) * 1000)))
                    return Task.isCancelled ? nil : CloseCode.tokenExpired
                }
            }
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: config.maxFrameBytes) {
                        connection.touch()
                        switch message {
                        case .text(let text): await handle(text)
                        case .binary:
                            send(ErrorFrame(AIIMError.badRequest("binary frames are not supported; send JSON text")))
                        }
                    }
                } catch {
                    logger.debug("inbound ended", metadata: ["error": "\(error)"])
                }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            connection.outbox.close()
            return first
        }
        // The device is gone from now on, whatever its socket still holds: delivery, this
        // gateway's connection count and presence say so at once (a slow consumer's close frame
        // waits behind the data it never read).
        services.hub.remove(connection)
        grant.finish()
        await presenceChanged(connected: false)
        if let closeCode {
            // The close frame goes out if the device reads within the grace; then the TCP
            // connection is dropped either way.
            let channel = connection.outbox.channel
            channel.eventLoop.scheduleTask(in: .milliseconds(Int64(config.closeGraceMillis))) { channel.close(promise: nil) }
            let reason = switch closeCode {
            case CloseCode.slowConsumer: "slow consumer"
            case CloseCode.tokenExpired: "token expired"
            case CloseCode.credentialRevoked: "API key revoked"
            default: "ping timeout"
            }
            try? await outbound.close(.init(codeNumber: closeCode), reason: reason)
        }
    }

    /// Sends `ping` every interval and closes connections silent for longer than the timeout.
    func heartbeat() async -> Int? {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(config.pingIntervalSeconds))
            if Task.isCancelled { return nil }
            if ContinuousClock.now - connection.lastSeen > .seconds(config.pingTimeoutSeconds) { return CloseCode.pingTimeout }
            send(HeartbeatFrame.ping)
            try? await services.presence.refresh(connection.identity)
        }
        return nil
    }

    /// The user's first connection came or their last one left: tell their contacts, and the
    /// calls service (which fails an answered call whose party stays away past the grace period).
    func presenceChanged(connected: Bool) async {
        let identity = connection.identity
        do {
            // The upgrade already recorded the connection (`ConnectionLimits.admit`).
            let changed = connected
                ? grant.firstOfUser
                : try await services.presence.disconnected(identity, connectionID: connection.id)
            if changed {
                try await services.backends.post(PresenceChanged(actor: identity.actor(), online: connected))
                if connected { try await services.backends.post(UserReconnected(actor: identity.actor())) }
                else { try await services.backends.post(UserDisconnected(actor: identity.actor())) }
            }
        } catch {
            logger.warning("presence update failed", metadata: ["error": "\(error)"])
        }
    }

    /// Handles one client frame; every outcome is a reply frame, nothing, or an `error` frame.
    func handle(_ text: String) async {
        let value: JSONValue
        do { value = try JSONBodyDecoder.object(Array(text.utf8)) } catch {
            send(ErrorFrame(ErrorMiddleware<AIIMRequestContext>.map(error)))
            return
        }
        let frame = value.objectValue ?? [:]
        let type = frame["type"]?.stringValue
        let handler = type.flatMap { services.frames.handler(for: $0) }
        Counter(label: "aiim_ws_frames_total", dimensions: [("type", handler == nil ? (type == nil ? "none" : "unknown") : type!)]).increment()
        if let wait = admit(type, frame) {
            send(ErrorFrame(AIIMError(.rateLimited, "more than \(wait.budget) frames per second"), request: frame,
                            retryAfterMillis: wait.after.wholeMilliseconds))
            return
        }
        do {
            // Refused before a bus round trip, with the request's ids echoed.
            try Validation.storable(json: Array(text.utf8))
            guard let handler else {
                guard let type, !type.isEmpty else { throw AIIMError.validation("type is required") }
                throw AIIMError(.unknownType, "unknown frame type '\(type.prefix(64))'")
            }
            if let reply = try await handler(value, FrameContext(connection: connection, frame: frame, logger: logger)) {
                connection.send(try reply.json(requestID: frame["request_id"].flatMap { $0.isNull ? nil : $0 }))
            }
        } catch {
            let e = ErrorMiddleware<AIIMRequestContext>.map(error)
            if e.code == .internalError {
                logger.error("frame failed", metadata: ["type": "\(type ?? "")", "error": "\(String(reflecting: error))"])
            }
            send(ErrorFrame(e, request: frame))
        }
    }

    /// The frame budgets: `ping`/`pong` and an answer's status, stop, end and resume frames are
    /// never held back (the end of an answer has priority over its deltas); deltas count against
    /// their answer's budget; every other frame against the user's.
    func admit(_ type: String?, _ frame: [String: JSONValue]) -> (after: Duration, budget: Int)? {
        switch type {
        case PingFrame.type, PingFrame.pongType, GenerationStatusFrame.type, GenerationEndFrame.type, GenerationTargetFrame.type,
             GenerationTargetFrame.resumeType:
            return nil
        case GenerationDeltaFrame.type:
            let key = connection.identity.tenantID + "\u{0}" + connection.identity.userID + "\u{0}" + (frame["message_id"]?.stringValue ?? "")
            return services.generationLimiter.admit(key: key).map { ($0, services.generationLimiter.perSecond) }
        default:
            return services.limiter.admit(connection.identity).map { ($0, services.limiter.perSecond) }
        }
    }

    func send(_ frame: some ServerFrame) {
        do { connection.send(try frame.json()) } catch {
            logger.error("cannot encode a frame", metadata: ["error": "\(error)"])
        }
    }
}
