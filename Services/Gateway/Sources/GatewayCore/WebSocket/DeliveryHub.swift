import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Logging
import Metrics
import NIOConcurrencyHelpers

/// Every live connection of this gateway, by user, and the fan-out of the delivery events read
/// from the shared events stream to them, in each device's `seq` order. The hub fetches what a
/// device is missing itself (gap fill, `subscribe` replay) from the messaging service's history.
final class DeliveryHub: Sendable {
    private let connections = NIOLockedValueBox<[String: [String: DeviceConnection]]>([:])
    let logger: Logger
    let backends: Backends
    /// A `message.created` event may answer a send of this gateway (`DeliveryEvent.reply`).
    let answer: @Sendable (EventReply, [UInt8]) -> Void
    /// Which reply stream is this gateway's own.
    let replyStream: String
    /// An API key was revoked (`DeliveryEvent.revokedKey`): forget it here.
    let forgetKey: @Sendable (String) -> Void

    init(logger: Logger, backends: Backends, forgetKey: @escaping @Sendable (String) -> Void = { _ in }) {
        self.logger = logger
        self.backends = backends
        self.forgetKey = forgetKey
        replyStream = backends.bus.replyStream
        answer = { [bus = backends.bus] reply, payload in bus.resolve(reply, payload: payload) }
    }

    static func key(_ tenant: String, _ user: String) -> String { tenant + "\u{0}" + user }

    func add(_ c: DeviceConnection) {
        connections.withLockedValue { $0[Self.key(c.identity.tenantID, c.identity.userID), default: [:]][c.id] = c }
        Gauge(label: "aiim_websocket_connections_active").record(count)
    }

    func remove(_ c: DeviceConnection) {
        connections.withLockedValue { all in
            let k = Self.key(c.identity.tenantID, c.identity.userID)
            all[k]?[c.id] = nil
            if all[k]?.isEmpty == true { all[k] = nil }
        }
        Gauge(label: "aiim_websocket_connections_active").record(count)
    }

    var count: Int { connections.withLockedValue { $0.values.reduce(0) { $0 + $1.count } } }

    func devices(tenant: String, user: String) -> [DeviceConnection] {
        connections.withLockedValue { Array(($0[Self.key(tenant, user)] ?? [:]).values) }
    }

    /// Delivers entries of the events stream to local devices.
    func dispatch(_ entries: [StreamEntry]) async {
        for entry in entries {
            guard let env = try? Envelope(fields: entry.fields), let event = try? DeliveryEvent(envelope: env) else {
                logger.error("malformed delivery event", metadata: ["entry": "\(entry.id)"])
                continue
            }
            deliver(event)
        }
    }

    func deliver(_ event: DeliveryEvent) {
        if let hash = event.revokedKey {
            // The key stops working on this gateway now: no cached identity, and every socket
            // opened with it (its bot user's) closes with 4003.
            forgetKey(hash)
            for user in Set(event.recipients) {
                for c in devices(tenant: event.tenantID, user: user) where c.identity.isBot { c.revoke() }
            }
            Counter(label: "aiim_api_key_revocations_total").increment()
            return
        }
        let text = event.frameText
        if let reply = event.reply, reply.stream == replyStream {
            // A batched send of ours: the event is its answer (messaging wrote no reply entry).
            if let payload = event.sendResult {
                answer(reply, payload)
            } else {
                logger.error("event answers a request but is not a message.created frame", metadata: ["request": "\(reply.correlationId)"])
            }
        }
        for user in Set(event.recipients) {
            for c in devices(tenant: event.tenantID, user: user) where c.id != event.excludeConnection {
                if let m = event.membership, m.joined.contains(user) {
                    c.ordering.withLockedValue { $0.joined(m.conversationID, seqBefore: m.seqBefore) }
                }
                if let id = event.generationStart { c.generations.withLockedValue { $0.set(id, 0) } }
                if let route = event.generation {
                    if let after = c.deliverGeneration(route, text: text) { scheduleGenerationFill(c, route.messageID, after: after) }
                } else if let conv = event.conversationId, let seq = event.seq {
                    if c.deliver(conversation: conv, seq: seq, text: text) { scheduleGapFill(c, conv) }
                } else {
                    c.send(text)
                }
                if let m = event.membership, m.left.contains(user) {
                    c.ordering.withLockedValue { $0.left(m.conversationID) }
                }
            }
        }
        Counter(label: "aiim_events_delivered_total").increment()
    }

    /// A device saw `seq` ahead of its cursor. Usually the missing event is just behind (another
    /// messaging replica published it a moment later); if it has not come within 250 ms, fetch
    /// it from the messaging service (it is committed: its seq was assigned before). A fetch that
    /// fails or brings nothing new is retried with a growing pause (up to `maxGapBackoff`) for as
    /// long as the gap and the connection last; what waits meanwhile is bounded by the device's
    /// ordering buffers (past them the device is closed with 4001 and resyncs).
    func scheduleGapFill(_ c: DeviceConnection, _ conversation: String) {
        // Unstructured: the gap fill outlives this dispatch call and must not block the events stream.
        Task {
            var pause = Self.gapWait
            while true {
                try? await Task.sleep(for: pause)
                guard let gap = c.ordering.withLockedValue({ $0.gap(conversation) }), !c.outbox.isClosed else { return }
                Counter(label: "aiim_ws_gap_fills_total").increment()
                let frames = await missing(c, conversation, after: gap.after)
                for frame in frames {
                    // Back-pressure: a long gap never overflows a healthy socket.
                    guard await c.outbox.waitForRoom() else { return }
                    _ = c.deliver(conversation: conversation, seq: frame.seq, text: frame.text)
                }
                let progressed = frames.contains { $0.seq > gap.after }
                pause = progressed ? .zero : min(max(pause * 2, Self.gapWait), Self.maxGapBackoff)
                if !progressed { Counter(label: "aiim_ws_gap_fill_retries_total").increment() }
            }
        }
    }

    /// How long a gap may stay open before the hub fetches it, and the longest pause between retries.
    static let gapWait: Duration = .milliseconds(250)
    static let maxGapBackoff: Duration = .seconds(5)

    /// One page of the messages after `cursor`, as `(seq, frame text)`; empty when the fetch failed.
    func missing(_ c: DeviceConnection, _ conversation: String, after cursor: Int64) async -> [(seq: Int64, text: String)] {
        do {
            return try await page(c, conversation, after: cursor).messages.map { ($0.seq, try messageEventText("message.created", $0)) }
        } catch {
            logger.warning("gap fill failed", metadata: ["conversation_id": "\(conversation)", "error": "\(error)"])
            return []
        }
    }

    /// `subscribe` with `after_seq`: every message after it, in order, before any live event of
    /// that conversation (which wait meanwhile, within the device's ordering bound), then live
    /// delivery resumes. Page by page, each frame only when the socket's queue has room, so a
    /// device that asks for a long history gets all of it without overflowing its queue.
    func replay(_ c: DeviceConnection, _ conversation: String, after: Int64) async throws {
        var cursor = after
        defer { c.release(conversation, upTo: cursor) }
        while true {
            let page = try await page(c, conversation, after: cursor)
            for m in page.messages {
                guard await c.outbox.waitForRoom() else { return }  // the connection is gone
                c.send(try messageEventText("message.created", m))
                cursor = m.seq
            }
            if !page.hasMore || page.messages.isEmpty { break }
        }
    }

    /// `generation.resume`: the answer now (with `after`: the deltas after it), then its live
    /// deltas, with no gap and no repeat: live ones that arrive meanwhile wait.
    func resume(_ c: DeviceConnection, _ id: String, after: Int64?, requestID: JSONValue?) async throws {
        c.generations.withLockedValue { $0.beginResume(id) }
        var reached: Int64 = after ?? 0
        defer {
            var out: [String] = []
            c.generations.withLockedValue { $0.endResume(id, at: reached, into: &out) }
            for t in out { c.send(t) }
        }
        let snapshot = try await backends.call(GetGeneration(actor: c.actor, messageID: id, afterOffset: after))
        reached = snapshot.deltas?.last?.offset ?? max(after ?? 0, snapshot.message.generation?.offset ?? 0)
        if after == nil { reached = snapshot.message.generation?.offset ?? 0 }
        c.send(try GenerationSnapshotFrame(snapshot).json(requestID: requestID.flatMap { $0.isNull ? nil : $0 }))
    }

    /// A device's answer has a gap (a delta event it never got): fetch the deltas after its
    /// offset, then release what waited.
    func scheduleGenerationFill(_ c: DeviceConnection, _ id: String, after: Int64) {
        // Unstructured: the fetch must not hold up the events stream.
        Task {
            var reached = after
            defer {
                var out: [String] = []
                c.generations.withLockedValue { $0.endResume(id, at: reached, into: &out) }
                for t in out { c.send(t) }
            }
            do {
                let snapshot = try await backends.call(GetGeneration(actor: c.actor, messageID: id, afterOffset: after))
                guard let tail = snapshot.deltas, let last = tail.last else { return }
                c.send(conversationEvent(snapshot.message.conversationID, "generation.delta", [
                    "message_id": .string(id), "deltas": try JSONValue(encoding: tail),
                ]))
                reached = last.offset
            } catch {
                logger.warning("generation gap fill failed", metadata: ["message_id": "\(id)", "error": "\(error)"])
            }
        }
    }

    private func page(_ c: DeviceConnection, _ conversation: String, after: Int64) async throws -> MessagePage {
        try await backends.call(History(actor: c.actor, conversationID: conversation, beforeSeq: nil, afterSeq: after, limit: 200))
    }
}
