import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Foundation
import HTTPTypes
import Hummingbird
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
    /// The device could not keep up; its send queue overflowed. Reconnect and resume by `seq`.
    static let slowConsumer = 4001
    /// The gateway is shutting down; reconnect (to another replica).
    static let goingAway = 1001
}

extension Gateway {
    /// The token of a WebSocket upgrade: `Authorization: Bearer`, `Sec-WebSocket-Protocol:
    /// bearer, <jwt>` (browsers) or `?token=` (as the original). Returns the subprotocol to select.
    func webSocketToken(_ request: Request) -> (token: String?, subprotocol: String?) {
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

    func addWebSocketRoute(to router: Router<AIIMRequestContext>) {
        router.ws("/api/aiim/ws") { request, context in
            let (token, subprotocol) = webSocketToken(request)
            guard let token else { throw AIIMError(.unauthorized, "authentication required") }
            let identity = try await authenticate(token)
            var headers: HTTPFields = [:]
            if let subprotocol { headers[.secWebSocketProtocol] = subprotocol }
            // The identity travels to the handler in the request context.
            context.webSocketIdentity.withLockedValue { $0 = identity }
            return .upgrade(headers)
        } onUpgrade: { inbound, outbound, context in
            guard let identity = context.requestContext.webSocketIdentity.withLockedValue({ $0 }) else { return }
            try await serve(identity: identity, channel: context.requestContext.channel,
                            inbound: inbound, outbound: outbound, logger: context.logger)
        }
    }

    /// Runs one connection: session set-up, the writer, the heartbeat, and the frame loop.
    /// Frames to the device go through the connection's `SocketOutbox`; `outbound` only closes.
    func serve(identity: Identity, channel: any Channel, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
               logger: Logger) async throws {
        let connection = Connection(identity: identity, channel: channel, queueLimit: config.sendQueueLimit)
        var connectionLogger = logger
        connectionLogger[metadataKey: "connection_id"] = "\(connection.id)"
        connectionLogger[metadataKey: "user_id"] = "\(identity.userID)"
        let logger = connectionLogger
        hub.add(connection)
        defer { hub.remove(connection) }

        // Cursors first, so live events are ordered from the start.
        do {
            let session = try await bus.request(OpenSession(actor: connection.actor), timeout: busTimeout)
            connection.state.withLockedValue { s in
                for (c, seq) in session.lastSeq where s.cursors[c] == nil { s.cursors[c] = seq }
            }
        } catch {
            logger.warning("session set-up failed", metadata: ["error": "\(error)"])
        }
        connection.send(.object([
            "type": .string("connected"), "connection_id": .string(connection.id), "user_id": .string(identity.userID),
            "ping_interval": .number(Double(config.pingIntervalSeconds)),
        ]))
        await presenceChanged(identity, connectionID: connection.id, connected: true, logger: logger)

        let closeCode: Int? = await withTaskGroup(of: Int?.self) { group in
            group.addTask {
                for await _ in connection.outbox.finished {}
                return connection.overflowed ? CloseCode.slowConsumer : nil
            }
            group.addTask { await heartbeat(connection) }
            group.addTask {
                do {
                    for try await message in inbound.messages(maxSize: config.maxFrameBytes) {
                        connection.touch()
                        switch message {
                        case .text(let text): await handleFrame(text, connection: connection, logger: logger)
                        case .binary:
                            connection.send(errorFrame(AIIMError.badRequest("binary frames are not supported; send JSON text"), request: nil))
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
        if let closeCode {
            try? await outbound.close(.init(codeNumber: closeCode),
                                      reason: closeCode == CloseCode.slowConsumer ? "slow consumer" : "ping timeout")
        }
        await presenceChanged(identity, connectionID: connection.id, connected: false, logger: logger)
    }

    /// Sends `ping` every interval and closes connections silent for longer than the timeout.
    func heartbeat(_ c: Connection) async -> Int? {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(config.pingIntervalSeconds))
            if Task.isCancelled { return nil }
            let silent = ContinuousClock.now - c.state.withLockedValue { $0.lastSeen }
            if silent > .seconds(config.pingTimeoutSeconds) { return CloseCode.pingTimeout }
            c.send(.object(["type": .string("ping")]))
            try? await presence.refresh(c.identity)
        }
        return nil
    }

    func presenceChanged(_ identity: Identity, connectionID: String, connected: Bool, logger: Logger) async {
        do {
            let changed = connected
                ? try await presence.connected(identity, connectionID: connectionID)
                : try await presence.disconnected(identity, connectionID: connectionID)
            if changed {
                try await bus.send(PresenceChanged(actor: identity.actor(), online: connected))
                // The calls service fails an answered call whose party stays away past the grace period.
                if connected { try await bus.send(UserReconnected(actor: identity.actor())) }
                else { try await bus.send(UserDisconnected(actor: identity.actor())) }
            }
        } catch {
            logger.warning("presence update failed", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Frames

    func errorFrame(_ error: any Error, request: JSONObject?) -> JSONValue {
        let e = ErrorMiddleware<AIIMRequestContext>.map(error)
        var f: [String: JSONValue] = ["type": .string("error"), "code": .string(e.code.rawValue), "message": .string(e.message)]
        if let r = request {
            for key in ["client_msg_id", "request_id", "conversation_id", "call_id"] { if let v = r[key] { f[key] = v } }
        }
        return .object(f)
    }

    /// Handles one client frame; every outcome is a reply frame or an `error` frame.
    func handleFrame(_ text: String, connection: Connection, logger: Logger) async {
        let frame: JSONObject
        do { frame = try JSONObject.parse(Array(text.utf8)) } catch {
            connection.send(errorFrame(error, request: nil))
            return
        }
        let type = (try? frame.optionalString("type")) ?? nil
        Counter(label: "aiim_ws_frames_total", dimensions: [("type", type.map { knownFrameTypes.contains($0) || $0.hasPrefix("call.") ? $0 : "unknown" } ?? "none")]).increment()
        if type != "ping", type != "pong", let wait = frameLimiter.admit(connection.identity) {
            var e = errorFrame(AIIMError(.rateLimited, "more than \(frameLimiter.perSecond) frames per second"), request: frame).objectValue ?? [:]
            e["retry_after_ms"] = .number(Double(wait.wholeMilliseconds))
            connection.send(.object(e))
            return
        }
        do {
            if let reply = try await reply(to: frame, type: type ?? "", connection: connection) {
                var r = reply.objectValue ?? [:]
                if let rid = frame["request_id"] { r["request_id"] = rid }
                connection.send(.object(r))
            }
        } catch {
            if ErrorMiddleware<AIIMRequestContext>.map(error).code == .internalError {
                logger.error("frame failed", metadata: ["type": "\(type ?? "")", "error": "\(String(reflecting: error))"])
            }
            connection.send(errorFrame(error, request: frame))
        }
    }

    var knownFrameTypes: Set<String> {
        ["subscribe", "unsubscribe", "send_msg", "stream_chunk", "delivered", "read", "mark_read", "typing", "ping", "pong", "sync"]
    }

    func reply(to frame: JSONObject, type: String, connection: Connection) async throws -> JSONValue? {
        let actor = connection.actor
        switch type {
        case "ping":
            return .object(["type": .string("pong")])
        case "pong":
            return nil
        case "send_msg":
            let result = try await bus.request(try sendCommand(frame, actor: actor, typeField: "msg_type"), timeout: busTimeout)
            return .object([
                "type": .string("ack"), "event": .string("message.sent"),
                "message_id": .string(result.message.messageID), "seq": .number(Double(result.message.seq)),
                "conversation_id": .string(result.message.conversationID),
                "client_msg_id": frame["client_msg_id"] ?? .null, "duplicate": .bool(result.duplicate),
            ])
        case "stream_chunk":
            let r = try await bus.request(try streamCommand(frame, actor: actor), timeout: busTimeout)
            return .object([
                "type": .string("ack"), "event": .string("stream.sent"), "message_id": .string(r.messageID),
                "stream_id": .string(r.streamID), "seq": .number(Double(r.seq)),
                "chunk_index": r.chunkIndex.map { .number(Double($0)) } ?? .null,
                "stream_end": .bool(r.streamEnd), "state": .string(r.state),
                "client_msg_id": frame["client_msg_id"] ?? .null,
            ])
        case "delivered", "read", "mark_read":
            let kind = type == "delivered" ? "delivered" : "read"
            let cursor = try await bus.request(try receiptCommand(frame, kind: kind, actor: actor), timeout: busTimeout)
            return .object([
                "type": .string("ack"), "event": .string("receipt.\(kind)"), "conversation_id": .string(cursor.conversationID),
                "last_read_seq": .number(Double(cursor.lastReadSeq)),
                "last_delivered_seq": .number(Double(cursor.lastDeliveredSeq)),
            ])
        case "typing":
            let id = try Validation.id(frame.optionalString("conversation_id"), field: "conversation_id")
            try await bus.send(Typing(actor: actor, conversationID: id, isTyping: try frame.bool("is_typing", default: true)))
            return nil
        case "sync":
            let result = try await bus.request(try syncCommand(frame, actor: actor), timeout: busTimeout)
            return .object(["type": .string("sync"), "conversations": try JSONValue(encoding: result.conversations)])
        case "subscribe":
            return try await subscribe(frame, connection: connection)
        case "unsubscribe":
            let id = try Validation.id(frame.optionalString("conversation_id"), field: "conversation_id")
            connection.state.withLockedValue { _ = $0.muted.insert(id) }
            return .object(["type": .string("unsubscribed"), "conversation_id": .string(id)])
        case let t where t.hasPrefix("call."):
            return try await handleCallFrame(t, .object(frame.fields), actor: actor)
        case "":
            throw AIIMError.validation("type is required")
        default:
            throw AIIMError(.unknownType, "unknown frame type '\(type.prefix(64))'")
        }
    }

    /// Membership check, then replay of what the device missed after `after_seq` (in order,
    /// before any live event of that conversation), then live delivery resumes.
    func subscribe(_ frame: JSONObject, connection: Connection) async throws -> JSONValue? {
        let id = try Validation.id(frame.optionalString("conversation_id"), field: "conversation_id")
        let after = try frame.optionalInt("after_seq")
        if let after, after < 0 { throw AIIMError.validation("after_seq must not be negative") }
        // Membership (and the current last seq) comes from messaging.
        let conversation = try await bus.request(GetConversation(actor: connection.actor, conversationID: id), timeout: busTimeout)
        connection.state.withLockedValue { s in
            s.muted.remove(id)
            if after != nil { s.replaying.insert(id) }
            if s.cursors[id] == nil { s.cursors[id] = Int64(after ?? Int(conversation.lastSeq)) }
        }
        var subscribed: [String: JSONValue] = ["type": "subscribed", "conversation_id": .string(id),
                                               "last_seq": .number(Double(conversation.lastSeq))]
        if let rid = frame["request_id"] { subscribed["request_id"] = rid }
        // Sent before the replay, so the device knows the replay that follows is for this request.
        connection.send(.object(subscribed))
        guard let after else { return nil }
        var cursor = Int64(after)
        defer {
            var out: [String] = []
            connection.state.withLockedValue { s in
                s.replaying.remove(id)
                s.cursors[id] = max(s.cursors[id] ?? 0, cursor)
                Connection.drain(&s, id, into: &out)
            }
            for t in out { connection.send(t) }
        }
        while true {
            let page = try await bus.request(
                History(actor: connection.actor, conversationID: id, beforeSeq: nil, afterSeq: cursor, limit: 200), timeout: busTimeout)
            for m in page.messages {
                connection.send(try messageEventText("message.created", m))
                cursor = m.seq
            }
            if !page.hasMore || page.messages.isEmpty { break }
        }
        return nil
    }

    /// Messages after `cursor` for a device that saw a gap, as `(seq, frame text)`.
    func gapFrames(_ c: Connection, _ conversation: String, _ cursor: Int64) async -> [(seq: Int64, text: String)] {
        do {
            let page = try await bus.request(
                History(actor: c.actor, conversationID: conversation, beforeSeq: nil, afterSeq: cursor, limit: 200), timeout: busTimeout)
            return try page.messages.map { ($0.seq, try messageEventText("message.created", $0)) }
        } catch {
            logger.warning("gap fill failed", metadata: ["conversation_id": "\(conversation)", "error": "\(error)"])
            return []
        }
    }
}

extension HTTPField.Name {
    static let secWebSocketProtocol = Self("Sec-WebSocket-Protocol")!
}
