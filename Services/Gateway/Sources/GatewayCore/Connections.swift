import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// One WebSocket connection's delivery state: a bounded outbox and, per conversation, the
/// last `seq` delivered. Messages reach the device in `seq` order with no gap and no duplicate:
/// an event ahead of the cursor waits in a buffer while the missing ones are fetched.
final class Connection: Sendable {
    let id: String
    let identity: Identity
    let outbox: SocketOutbox
    let state = NIOLockedValueBox(State())

    struct State {
        var cursors: [String: Int64] = [:]
        var buffers: [String: [Int64: String]] = [:]
        var gapFetching: Set<String> = []
        /// Conversations being replayed after `subscribe`: live events wait in the buffer.
        var replaying: Set<String> = []
        /// Conversations this device unsubscribed from.
        var muted: Set<String> = []
        var lastSeen = ContinuousClock.now
    }

    init(identity: Identity, channel: any Channel, queueLimit: Int) {
        id = UUIDs.make()
        self.identity = identity
        outbox = SocketOutbox(channel: channel, limit: queueLimit)
    }

    var actor: Actor { identity.actor(connectionID: id) }

    /// Queues a frame; a full queue marks the connection as a slow consumer (it is then closed
    /// with code 4001 and resumes by `seq` after reconnecting).
    func send(_ text: String) {
        if outbox.enqueue(text) == .overflowed {
            Counter(label: "aiim_ws_slow_consumer_closed_total").increment()
        }
    }

    func send(_ frame: JSONValue) { send(frame.jsonString()) }

    var overflowed: Bool { outbox.overflowed }

    /// Delivers an ordered event; returns true when a gap needs filling.
    func deliver(conversation: String, seq: Int64, text: String) -> Bool {
        var out: [String] = []
        var needGap = false
        state.withLockedValue { s in
            if s.muted.contains(conversation) { return }
            if s.replaying.contains(conversation) {
                s.buffers[conversation, default: [:]][seq] = text
                return
            }
            guard let cursor = s.cursors[conversation] else {
                s.cursors[conversation] = seq
                out.append(text)
                return
            }
            if seq <= cursor { return }  // already delivered (a re-publish or a replay)
            if seq == cursor + 1 {
                out.append(text)
                s.cursors[conversation] = seq
                Self.drain(&s, conversation, into: &out)
            } else {
                s.buffers[conversation, default: [:]][seq] = text
                if !s.gapFetching.contains(conversation) {
                    s.gapFetching.insert(conversation)
                    needGap = true
                }
            }
        }
        for t in out { send(t) }
        return needGap
    }

    static func drain(_ s: inout State, _ conversation: String, into out: inout [String]) {
        guard var buffer = s.buffers[conversation], var cursor = s.cursors[conversation] else { return }
        while let next = buffer.removeValue(forKey: cursor + 1) {
            out.append(next)
            cursor += 1
        }
        buffer = buffer.filter { $0.key > cursor }
        s.cursors[conversation] = cursor
        s.buffers[conversation] = buffer.isEmpty ? nil : buffer
    }

    /// (cursor, lowest buffered seq) while a gap remains, else nil (and the gap is closed).
    func gap(_ conversation: String) -> (after: Int64, upTo: Int64)? {
        state.withLockedValue { s in
            guard let buffer = s.buffers[conversation], let low = buffer.keys.min(), let cursor = s.cursors[conversation],
                  low > cursor + 1 else {
                s.gapFetching.remove(conversation)
                return nil
            }
            return (cursor, low)
        }
    }

    func joined(_ conversation: String, seqBefore: Int64) {
        state.withLockedValue { s in
            if s.cursors[conversation] == nil { s.cursors[conversation] = seqBefore }
        }
    }

    func left(_ conversation: String) {
        state.withLockedValue { s in
            s.cursors[conversation] = nil
            s.buffers[conversation] = nil
        }
    }

    func touch() { state.withLockedValue { $0.lastSeen = .now } }
}

/// The frames waiting for one socket, written straight to its NIO channel by one writer on the
/// channel's event loop: whatever was queued during an event-loop tick goes out with one flush
/// (one `writev`; a 1:1 message is three frames). While the socket cannot take more (the peer
/// reads slower than we write), frames wait here; more than `limit` waiting frames make the
/// device a slow consumer: the outbox stops and `finished` ends, and the connection is closed.
final class SocketOutbox: Sendable {
    enum Enqueued { case queued, overflowed, closed }

    let channel: any Channel
    let limit: Int
    /// Ends when the outbox overflowed (or was closed).
    let finished: AsyncStream<Void>
    private let finish: AsyncStream<Void>.Continuation
    private let state = NIOLockedValueBox(State())

    private struct State {
        var pending: [String] = []
        /// A write is scheduled on the event loop (or waiting for the socket to drain).
        var scheduled = false
        var overflowed = false
        var closed = false
    }

    init(channel: any Channel, limit: Int) {
        self.channel = channel
        self.limit = limit
        (finished, finish) = AsyncStream.makeStream(of: Void.self)
    }

    var overflowed: Bool { state.withLockedValue { $0.overflowed } }

    func enqueue(_ text: String) -> Enqueued {
        let (result, schedule) = state.withLockedValue { s -> (Enqueued, Bool) in
            if s.closed { return (.closed, false) }
            if s.pending.count >= limit {
                s.overflowed = true
                s.closed = true
                s.pending = []
                return (.overflowed, false)
            }
            s.pending.append(text)
            if s.scheduled { return (.queued, false) }
            s.scheduled = true
            return (.queued, true)
        }
        if result == .overflowed { finish.finish() }
        if schedule { channel.eventLoop.execute { self.write() } }
        return result
    }

    /// No more frames are written (the connection is ending).
    func close() {
        state.withLockedValue { s in
            s.closed = true
            s.pending = []
        }
        finish.finish()
    }

    /// On the event loop: writes everything pending, then flushes once.
    private func write() {
        let active = channel.isActive
        let stopped = state.withLockedValue { s -> Bool in
            guard s.closed || !active else { return false }
            s.closed = true
            s.scheduled = false
            s.pending = []
            return true
        }
        if stopped { return }  // the socket is gone: nothing to wait for
        guard channel.isWritable else {
            // The socket's buffers are full: try again shortly; meanwhile frames queue up to `limit`.
            channel.eventLoop.scheduleTask(in: .milliseconds(5)) { self.write() }
            return
        }
        let batch = state.withLockedValue { s -> [String] in
            s.scheduled = false
            defer { s.pending = [] }
            return s.pending
        }
        guard !batch.isEmpty else { return }
        for text in batch {
            channel.write(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)), promise: nil)
        }
        channel.flush()
    }
}

/// Every live connection of this gateway, by user, and the fan-out of delivery events read
/// from the shared events stream.
final class ConnectionHub: Sendable {
    let connections = NIOLockedValueBox<[String: [String: Connection]]>([:])
    let logger: Logger
    /// Fetches the messages after a cursor when a device sees a gap (over the bus).
    let fetchGap: @Sendable (Connection, String, Int64) async -> [(seq: Int64, text: String)]
    /// This gateway's bus client: a `message.created` event may answer one of its requests.
    let bus: BusClient

    init(logger: Logger, bus: BusClient,
         fetchGap: @escaping @Sendable (Connection, String, Int64) async -> [(seq: Int64, text: String)]) {
        self.logger = logger
        self.bus = bus
        self.fetchGap = fetchGap
    }

    static func key(_ tenant: String, _ user: String) -> String { tenant + "\u{0}" + user }

    func add(_ c: Connection) {
        connections.withLockedValue { $0[Self.key(c.identity.tenantID, c.identity.userID), default: [:]][c.id] = c }
        Gauge(label: "aiim_websocket_connections_active").record(count)
    }

    func remove(_ c: Connection) {
        connections.withLockedValue { all in
            let k = Self.key(c.identity.tenantID, c.identity.userID)
            all[k]?[c.id] = nil
            if all[k]?.isEmpty == true { all[k] = nil }
        }
        Gauge(label: "aiim_websocket_connections_active").record(count)
    }

    var count: Int { connections.withLockedValue { $0.values.reduce(0) { $0 + $1.count } } }

    func devices(tenant: String, user: String) -> [Connection] {
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
        let text = event.frameText
        if let reply = event.reply, reply.stream == bus.replyStream {
            // A batched send of ours: the event is its answer (messaging wrote no reply entry).
            if let conversation = event.conversationId,
               let payload = sendResultJSON(fromCreatedEvent: text, conversationID: conversation) {
                bus.resolve(reply, payload: payload)
            } else {
                logger.error("event answers a request but is not a message.created frame", metadata: ["request": "\(reply.correlationId)"])
            }
        }
        for user in Set(event.recipients) {
            for c in devices(tenant: event.tenantID, user: user) where c.id != event.excludeConnection {
                if let m = event.membership {
                    if m.joined.contains(user) { c.joined(m.conversationID, seqBefore: m.seqBefore) }
                }
                if let conv = event.conversationId, let seq = event.seq {
                    if c.deliver(conversation: conv, seq: seq, text: text) { scheduleGapFill(c, conv) }
                } else {
                    c.send(text)
                }
                if let m = event.membership, m.left.contains(user) { c.left(m.conversationID) }
            }
        }
        Counter(label: "aiim_events_delivered_total").increment()
    }

    /// A device saw `seq` ahead of its cursor. Usually the missing event is just behind (another
    /// messaging replica published it a moment later); if it has not come within 250 ms, fetch
    /// it from the messaging service (it is committed: its seq was assigned before).
    func scheduleGapFill(_ c: Connection, _ conversation: String) {
        // Unstructured: the gap fill outlives this dispatch call and must not block the events stream.
        Task {
            for _ in 0..<20 {
                try? await Task.sleep(for: .milliseconds(250))
                guard let gap = c.gap(conversation), !c.overflowed else { return }
                Counter(label: "aiim_ws_gap_fills_total").increment()
                for frame in await fetchGap(c, conversation, gap.after) {
                    _ = c.deliver(conversation: conversation, seq: frame.seq, text: frame.text)
                }
            }
        }
    }
}
