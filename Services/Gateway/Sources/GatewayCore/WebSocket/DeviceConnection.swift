import AIIMJSON
import AIIMProtocol
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// One device's WebSocket connection as the delivery side sees it: who it is, its outbox, and
/// the order in which it has been given each conversation's messages.
final class DeviceConnection: Sendable {
    let id: String
    let identity: Identity
    let outbox: SocketOutbox
    let ordering: NIOLockedValueBox<DeviceOrdering>
    private let lastSeenBox = NIOLockedValueBox(ContinuousClock.now)

    /// `queueLimit`/`queueBytes` bound the socket's send queue and, as well, the events held
    /// back for this device while a gap is filled or a replay runs.
    init(id: String = UUIDs.make(), identity: Identity, channel: any Channel, queueLimit: Int, queueBytes: Int = .max) {
        self.id = id
        self.identity = identity
        outbox = SocketOutbox(channel: channel, limit: queueLimit, byteLimit: queueBytes)
        ordering = NIOLockedValueBox(DeviceOrdering(maxBuffered: queueLimit, maxBufferedBytes: queueBytes))
    }

    /// The device as the backends see it (the connection id lets events skip this device).
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

    private let revokedBox = NIOLockedValueBox(false)
    /// The credential this socket was opened with was revoked: the session ends with 4003.
    var revoked: Bool { revokedBox.withLockedValue { $0 } }

    /// Ends the session as revoked (4003), after what is queued, the revocation frame included.
    func revoke() {
        revokedBox.withLockedValue { $0 = true }
        outbox.close()
    }

    /// Delivers an ordered event of a conversation; returns true when a gap needs filling. When
    /// the events held back for this device pass the bound, the device is closed as a slow
    /// consumer (4001): it resyncs from its last `seq` after reconnecting.
    func deliver(conversation: String, seq: Int64, text: String) -> Bool {
        var out: [String] = []
        let (needGap, overflowed) = ordering.withLockedValue {
            ($0.accept(conversation: conversation, seq: seq, text: text, into: &out), $0.overflowed)
        }
        if overflowed {
            if !outbox.isClosed { Counter(label: "aiim_ws_resync_closed_total").increment() }
            outbox.overflow()
            return false
        }
        for t in out { send(t) }
        return needGap
    }

    /// Sends what a replay or gap fill released.
    func release(_ conversation: String, upTo cursor: Int64) {
        var out: [String] = []
        ordering.withLockedValue { $0.finishReplay(conversation, cursor: cursor, into: &out) }
        for t in out { send(t) }
    }

    // MARK: AI answers

    /// Per answer this connection produces: its appender (`GenerationFrames.swift`).
    private let appenders = NIOLockedValueBox<[String: GenerationAppender]>([:])
    /// Per answer this device watches: the last offset it was given, and live deltas held back
    /// while it resumes.
    let generations = NIOLockedValueBox(GenerationCursors())

    func appender(for id: String, backends: Backends, logger: Logger) throws -> GenerationAppender {
        try appenders.withLockedValue { all in
            if let a = all[id] { return a }
            guard all.count < 64 else { throw AIIMError(.rateLimited, "more than 64 answers in production on one connection") }
            let a = GenerationAppender(messageID: id, backends: backends, connection: self, logger: logger)
            all[id] = a
            return a
        }
    }

    func drainAppender(_ id: String) async {
        if let a = appenders.withLockedValue({ $0[id] }) { await a.drain() }
    }

    func removeAppender(_ id: String) { appenders.withLockedValue { _ = $0.removeValue(forKey: id) } }

    /// A live `generation.delta` event: sent unless the device already has those offsets (a
    /// repeat, or what a resume gave it) or is resuming that answer now (then it waits).
    /// Returns the offset to fill a gap after, when one opened (the hub fetches it).
    func deliverGeneration(_ route: GenerationRoute, text: String) -> Int64? {
        var out: [String] = []
        let gap = generations.withLockedValue { $0.accept(route, text: text, into: &out) }
        for t in out { send(t) }
        return gap
    }

    var lastSeen: ContinuousClock.Instant { lastSeenBox.withLockedValue { $0 } }
    func touch() { lastSeenBox.withLockedValue { $0 = .now } }
}

/// Per conversation, the last `seq` a device was given and the events that arrived ahead of it.
/// Messages reach the device in `seq` order with no gap and no duplicate: an event ahead of the
/// cursor waits here while the missing ones are fetched.
struct DeviceOrdering: Sendable {
    var cursors: [String: Int64] = [:]
    private(set) var buffers: [String: [Int64: String]] = [:]
    /// Bound of the events held back (all conversations), in events and bytes; past it
    /// `overflowed` is set and nothing more is held.
    let maxBuffered: Int
    let maxBufferedBytes: Int
    private(set) var bufferedCount = 0
    private(set) var bufferedBytes = 0
    private(set) var overflowed = false
    var gapFetching: Set<String> = []
    /// Conversations being replayed after `subscribe`: live events wait in the buffer.
    var replaying: Set<String> = []
    /// Conversations this device unsubscribed from.
    var muted: Set<String> = []

    init(maxBuffered: Int = .max, maxBufferedBytes: Int = .max) {
        self.maxBuffered = maxBuffered
        self.maxBufferedBytes = maxBufferedBytes
    }

    /// Holds an event back (replaces one with the same `seq`).
    private mutating func hold(_ conversation: String, _ seq: Int64, _ text: String) {
        if let old = buffers[conversation, default: [:]].updateValue(text, forKey: seq) {
            bufferedBytes -= old.utf8.count
            bufferedCount -= 1
        }
        bufferedCount += 1
        bufferedBytes += text.utf8.count
        if bufferedCount > maxBuffered || bufferedBytes > maxBufferedBytes { overflowed = true }
    }

    /// Replaces a conversation's held events, keeping the totals true.
    private mutating func setBuffer(_ conversation: String, _ buffer: [Int64: String]?) {
        if let old = buffers[conversation] {
            bufferedCount -= old.count
            bufferedBytes -= old.values.reduce(0) { $0 + $1.utf8.count }
        }
        buffers[conversation] = buffer
        if let buffer {
            bufferedCount += buffer.count
            bufferedBytes += buffer.values.reduce(0) { $0 + $1.utf8.count }
        }
    }

    /// Cursors the session starts from (the conversations' last `seq` when the device connected).
    mutating func start(from lastSeq: [String: Int64]) {
        for (c, seq) in lastSeq where cursors[c] == nil { cursors[c] = seq }
    }

    /// Takes an event: what may be sent now goes to `out`; true when a gap fetch should start.
    mutating func accept(conversation: String, seq: Int64, text: String, into out: inout [String]) -> Bool {
        if muted.contains(conversation) { return false }
        if replaying.contains(conversation) {
            hold(conversation, seq, text)
            return false
        }
        guard let cursor = cursors[conversation] else {
            cursors[conversation] = seq
            out.append(text)
            return false
        }
        if seq <= cursor { return false }  // already delivered (a re-publish or a replay)
        if seq == cursor + 1 {
            out.append(text)
            cursors[conversation] = seq
            drain(conversation, into: &out)
            return false
        }
        hold(conversation, seq, text)
        guard !gapFetching.contains(conversation) else { return false }
        gapFetching.insert(conversation)
        return true
    }

    /// Sends buffered events that follow the cursor.
    mutating func drain(_ conversation: String, into out: inout [String]) {
        guard var buffer = buffers[conversation], var cursor = cursors[conversation] else { return }
        while let next = buffer.removeValue(forKey: cursor + 1) {
            out.append(next)
            cursor += 1
        }
        buffer = buffer.filter { $0.key > cursor }
        cursors[conversation] = cursor
        setBuffer(conversation, buffer.isEmpty ? nil : buffer)
    }

    /// (cursor, lowest buffered seq) while a gap remains, else nil (and the gap is closed).
    mutating func gap(_ conversation: String) -> (after: Int64, upTo: Int64)? {
        guard let buffer = buffers[conversation], let low = buffer.keys.min(), let cursor = cursors[conversation],
              low > cursor + 1 else {
            gapFetching.remove(conversation)
            return nil
        }
        return (cursor, low)
    }

    /// `subscribe`: the device wants this conversation again, replayed after `after` if given.
    /// Returns nothing; live events wait until `finishReplay`.
    mutating func subscribe(_ conversation: String, after: Int64?, lastSeq: Int64) {
        muted.remove(conversation)
        if after != nil { replaying.insert(conversation) }
        if cursors[conversation] == nil { cursors[conversation] = after ?? lastSeq }
    }

    /// The replay reached `cursor`: live delivery resumes with what waited.
    mutating func finishReplay(_ conversation: String, cursor: Int64, into out: inout [String]) {
        replaying.remove(conversation)
        cursors[conversation] = max(cursors[conversation] ?? 0, cursor)
        drain(conversation, into: &out)
    }

    mutating func joined(_ conversation: String, seqBefore: Int64) {
        if cursors[conversation] == nil { cursors[conversation] = seqBefore }
    }

    mutating func left(_ conversation: String) {
        cursors[conversation] = nil
        setBuffer(conversation, nil)
    }
}

/// The offsets a device has of each answer it watches (bounded: the oldest answers are forgotten).
struct GenerationCursors: Sendable {
    var offsets: [String: Int64] = [:]
    var order: [String] = []
    var resuming: [String: [(GenerationRoute, String)]] = [:]
    static let limit = 256

    /// Takes a live delta event; returns the device's offset when a gap opened before it (the
    /// event then waits until the gap is filled). A device that does not watch the answer (it
    /// connected mid-answer and has not resumed it) gets nothing: it resumes first.
    mutating func accept(_ route: GenerationRoute, text: String, into out: inout [String]) -> Int64? {
        if resuming[route.messageID] != nil {
            resuming[route.messageID]!.append((route, text))
            return nil
        }
        guard let have = offsets[route.messageID] else { return nil }
        if route.to <= have { return nil }  // all repeats
        if route.from > have + 1 {
            resuming[route.messageID] = [(route, text)]
            return have
        }
        if route.from <= have {
            // Overlaps what the device has (after a resume): only the deltas after it.
            if let trimmed = Self.trim(text, after: have) { out.append(trimmed) }
        } else {
            out.append(text)
        }
        set(route.messageID, route.to)
        return nil
    }

    mutating func set(_ id: String, _ offset: Int64) {
        if offsets[id] == nil {
            order.append(id)
            if order.count > Self.limit { offsets[order.removeFirst()] = nil }
        }
        offsets[id] = max(offsets[id] ?? 0, offset)
    }

    mutating func beginResume(_ id: String) { resuming[id] = resuming[id] ?? [] }

    /// The snapshot/tail reached `offset`: what was held back follows, without repeats.
    mutating func endResume(_ id: String, at offset: Int64, into out: inout [String]) {
        let held = resuming.removeValue(forKey: id) ?? []
        set(id, offset)
        for (route, text) in held { _ = accept(route, text: text, into: &out) }
    }

    /// A `generation.delta` frame with only the deltas after `after` (nil when none are left).
    static func trim(_ text: String, after: Int64) -> String? {
        guard case .object(var frame)? = try? JSONValue(parsing: Array(text.utf8)), case .object(var data)? = frame["data"],
              case .array(let deltas)? = data["deltas"] else { return nil }
        let kept = deltas.filter { ($0["offset"]?.intValue).map { Int64($0) > after } ?? false }
        guard !kept.isEmpty else { return nil }
        data["deltas"] = .array(kept)
        frame["data"] = .object(data)
        return JSONValue.object(frame).jsonString()
    }
}
