import AIIMConfiguration
import AIIMJSON
import AIIMProtocol
import Foundation
import GatewayCore
import Histogram
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

// `aiim-bench gen-load --gateway HOST:PORT --answers N --tokens M --watchers W --rate R [--pids "P…"] [--threads T]`
// (JWT_SECRET; DATABASE_URL for the PostgreSQL counts): N AI answers at once (docs/AI.md), each
// in its own conversation with a producing agent and W watching devices (W more members). The
// agents send M text tokens each, one token per `generation.delta` frame (one delta), open loop:
// R deltas/s in total, spread evenly over the answers (R/N per answer). Each token's text is
// "t<send instant in ns> ", so a watcher knows when the delta it got was sent. Numbers are
// printed, never asserted.
//
// The clients are plain NIO channel handlers like ws-load's, and the hot frames (delta events,
// delta acks) are scanned for the few fields the bench needs instead of being parsed: the load
// generator shares the machine with what it measures. A producer stops its answer at its first
// error frame (a real one would resend from its last ack after `retry_after_ms`): the report
// counts such answers by error code.

/// Byte-level search in a frame (frames are a few hundred bytes: a plain scan is enough).
struct Scan {
    let p: UnsafeRawBufferPointer

    func find(_ needle: StaticString, from: Int = 0) -> Int? {
        let n = needle.utf8CodeUnitCount
        guard n > 0, p.count >= n else { return nil }
        let first = needle.utf8Start[0]
        var i = from
        while i <= p.count - n {
            if p[i] == first {
                var j = 1
                while j < n && p[i + j] == needle.utf8Start[j] { j += 1 }
                if j == n { return i }
            }
            i += 1
        }
        return nil
    }

    func contains(_ needle: StaticString) -> Bool { find(needle) != nil }

    /// The decimal integer at `i` (and where it ends).
    func integer(at i: Int) -> (value: UInt64, end: Int) {
        var v: UInt64 = 0, k = i
        while k < p.count, p[k] >= 0x30, p[k] <= 0x39 { v = v * 10 + UInt64(p[k] - 0x30); k += 1 }
        return (v, k)
    }

    /// The value of the first `"offset":` at or after `from`.
    func offset(from: Int = 0) -> (value: UInt64, end: Int)? {
        guard let at = find("\"offset\":", from: from) else { return nil }
        return integer(at: at + 9)
    }
}

func scan<T>(_ buffer: ByteBuffer, _ body: (Scan) -> T) -> T {
    buffer.withUnsafeReadableBytes { body(Scan(p: $0)) }
}

/// The size of a WebSocket frame header from the server (unmasked) for a payload of `n` bytes.
func wsHeaderBytes(_ n: Int) -> Int { n < 126 ? 2 : (n < 65_536 ? 4 : 10) }

/// What the clients of one event loop observed (written by that loop only).
final class GenStats: Sendable {
    struct Values {
        var delay = newHistogram()
        // producers
        var deltasSent = 0, accepted = 0, acks = 0, ended = 0
        var errors: [String: Int] = [:]
        var firstSend: UInt64 = .max, lastAck: UInt64 = 0
        var producerEventFrames = 0, producerEventBytes = 0
        // watchers
        var deltaFrames = 0, deltasReceived = 0, lastDelivery: UInt64 = 0
    }
    let values = NIOLockedValueBox(Values())
}

protocol GenClient: ChannelInboundHandler, SendableMetatype where InboundIn == WebSocketFrame, OutboundOut == WebSocketFrame {
    var ready: EventLoopPromise<Void> { get }
    var context: ChannelHandlerContext? { get set }
    var unflushed: Bool { get set }
    func text(_ data: ByteBuffer, context: ChannelHandlerContext)
}

extension GenClient {
    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        ready.fail(ChannelError.ioOnClosedChannel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text: text(frame.unmaskedData, context: context)
        case .ping:
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
            unflushed = true
        case .connectionClose: context.close(promise: nil)
        default: break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { flush() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    func write(_ text: String) {
        guard let context else { return }
        context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(),
                                                     data: context.channel.allocator.buffer(string: text))), promise: nil)
        unflushed = true
    }

    func flush() {
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }

    /// The frames every client handles alike: `connected`, the JSON heartbeat.
    func common(_ s: Scan) -> Bool {
        if s.contains("\"type\":\"connected\"") { ready.succeed(); return true }
        if s.p.count < 40, s.contains("\"type\":\"ping\"") { write(#"{"type":"pong"}"#); return true }
        return false
    }
}

/// An agent producing one answer in its conversation.
final class GenProducer: GenClient {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let index: Int, conversation: String, tokens: Int, stats: GenStats
    let ready: EventLoopPromise<Void>
    let started: EventLoopPromise<String>
    let endedPromise: EventLoopPromise<String>
    var context: ChannelHandlerContext?
    var unflushed = false
    private(set) var messageID = ""
    private(set) var next = 1
    private(set) var acked = 0
    /// The first error's code: the answer stopped there.
    private(set) var failure: String?

    init(index: Int, conversation: String, tokens: Int, stats: GenStats, eventLoop: any EventLoop) {
        self.index = index; self.conversation = conversation; self.tokens = tokens; self.stats = stats
        ready = eventLoop.makePromise(); started = eventLoop.makePromise(); endedPromise = eventLoop.makePromise()
    }

    /// Every delta sent has been acknowledged (or refused).
    var settled: Bool { failure != nil || acked >= next - 1 }
    var exhausted: Bool { failure != nil || next > tokens }

    func start(run: String) {
        write(#"{"type":"generation.start","conversation_id":"\#(conversation)","client_generation_id":"\#(UUIDs.make())"}"#)
        flush()
    }

    /// Writes the next token (flushed by the pacer).
    func sendToken() {
        guard !exhausted, !messageID.isEmpty else { return }
        let now = nowNanos()
        let k = next
        next += 1
        let type = k == 1 ? #","type":"text""# : ""
        write(#"{"type":"generation.delta","message_id":"\#(messageID)","request_id":\#(k),"deltas":[{"offset":\#(k),"part":0\#(type),"text":"t\#(now) "}]}"#)
        stats.values.withLockedValue {
            $0.deltasSent += 1
            $0.firstSend = min($0.firstSend, now)
        }
    }

    func end() {
        if let failure {
            write(#"{"type":"generation.end","message_id":"\#(messageID)","state":"failed","error":"bench: \#(failure)"}"#)
        } else {
            write(#"{"type":"generation.end","message_id":"\#(messageID)","state":"completed","last_offset":\#(acked)}"#)
        }
        flush()
    }

    func text(_ data: ByteBuffer, context: ChannelHandlerContext) {
        let now = nowNanos()
        enum Kind { case event, deltaAck(Int), started(String), ended(String), error, other }
        let kind: Kind = scan(data) { s in
            if common(s) { return .other }
            if s.contains("\"type\":\"event\"") { return .event }
            if s.contains("\"type\":\"ack\"") {
                if s.contains("\"event\":\"generation.delta\"") { return .deltaAck(Int(s.offset()?.value ?? 0)) }
                let json = try? JSONValue(parsing: data.readableBytesView)
                switch json?["event"]?.stringValue {
                case "generation.started": return .started(json?["message_id"]?.stringValue ?? "")
                case "generation.ended": return .ended(json?["state"]?.stringValue ?? "")
                default: return .other
                }
            }
            if s.contains("\"type\":\"error\"") { return .error }
            return .other
        }
        switch kind {
        case .event:
            stats.values.withLockedValue { $0.producerEventFrames += 1; $0.producerEventBytes += data.readableBytes }
        case .deltaAck(let offset):
            let gained = max(0, offset - acked)
            acked = max(acked, offset)
            stats.values.withLockedValue { $0.acks += 1; $0.accepted += gained; $0.lastAck = now }
        case .started(let id):
            messageID = id
            started.succeed(id)
        case .ended(let state):
            stats.values.withLockedValue { $0.ended += 1 }
            endedPromise.succeed(state)
        case .error:
            let json = try? JSONValue(parsing: data.readableBytesView)
            let code = json?["code"]?.stringValue ?? "unknown"
            stats.values.withLockedValue { $0.errors[code, default: 0] += 1 }
            if messageID.isEmpty {
                started.fail(AIIMError.badRequest("generation.start refused: \(code)"))
            } else if json?["message_id"] == nil && json?["request_id"] == nil {
                endedPromise.succeed("error \(code)")  // the end itself was refused
            } else if failure == nil {
                failure = code
            }
        case .other:
            break
        }
    }
}

/// A device watching one answer: checks the deltas' order and measures delta→device and bytes.
final class GenWatcher: GenClient {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let answer: Int, stats: GenStats
    let ready: EventLoopPromise<Void>
    var context: ChannelHandlerContext?
    var unflushed = false

    struct Summary {
        var answer = 0
        var deltas = 0, deltaFrames = 0, duplicates = 0, reordered = 0, highest = 0, distinct = 0
        var textBytes = 0, deltaFrameBytes = 0, eventBytes = 0, headerBytes = 0, ended = false
    }
    private(set) var summary = Summary()
    private var seen: [Bool]

    init(answer: Int, tokens: Int, stats: GenStats, eventLoop: any EventLoop) {
        self.answer = answer; self.stats = stats
        summary.answer = answer
        seen = [Bool](repeating: false, count: tokens + 2)
        ready = eventLoop.makePromise()
    }

    func text(_ data: ByteBuffer, context: ChannelHandlerContext) {
        let now = nowNanos()
        let n = data.readableBytes
        scan(data) { s in
            if common(s) { return }
            guard s.contains("\"type\":\"event\"") else { return }
            // Every event of this conversation is about its one answer.
            summary.eventBytes += n
            summary.headerBytes += wsHeaderBytes(n)
            if s.contains("\"event\":\"generation.status\"") {
                if s.contains("\"state\":\"completed\"") || s.contains("\"state\":\"failed\"") || s.contains("\"state\":\"stopped\"")
                    || s.contains("\"state\":\"interrupted\"") { summary.ended = true }
                return
            }
            guard s.contains("\"event\":\"generation.delta\"") else { return }
            summary.deltaFrames += 1
            summary.deltaFrameBytes += n
            var delays: [UInt64] = []
            var at = 0
            // Offsets and texts pair up in order: every delta has both.
            var offsets: [Int] = []
            while let o = s.offset(from: at) { offsets.append(Int(o.value)); at = o.end }
            at = 0
            while let t = s.find("\"text\":\"", from: at) {
                let stamp = s.integer(at: t + 9)
                var close = stamp.end
                while close < s.p.count, s.p[close] != UInt8(ascii: "\"") { close += 1 }
                summary.textBytes += close - (t + 8)
                if stamp.value > 0 { delays.append((now &- stamp.value) / 1000) }
                at = close
            }
            for o in offsets {
                summary.deltas += 1
                if o < seen.count, o >= 0 {
                    if seen[o] { summary.duplicates += 1; continue }
                    seen[o] = true
                }
                summary.distinct += 1
                if o < summary.highest { summary.reordered += 1 }
                summary.highest = max(summary.highest, o)
            }
            stats.values.withLockedValue { v in
                v.deltaFrames += 1
                v.deltasReceived += offsets.count
                v.lastDelivery = now
                for d in delays { _ = v.delay.record(d) }
            }
        }
    }
}

/// Opens a WebSocket to the gateway with `make`'s handler on it and waits for its `connected` frame.
func connectGenClient<H: GenClient>(group: any EventLoopGroup, host: String, port: Int, token: String,
                                    make: @escaping @Sendable (any EventLoop) -> H) async throws -> NIOLoopBound<H> {
    let handler = try await connectLoadClient(group: group, host: host, port: port, token: token, make: make)
    let ready = handler.eventLoop.flatSubmit { handler.value.ready.futureResult }
    handler.eventLoop.scheduleTask(in: .seconds(15)) { handler.value.ready.fail(ChannelError.connectTimeout(.seconds(15))) }
    try await ready.get()
    return handler
}

/// Open loop over one event loop's producers: slot s of the schedule belongs to producer
/// s % count, so every answer gets the same rate; a finished or failed answer's slots pass.
final class GenPacer {
    let producers: [GenProducer]
    let perSecond: Double
    let start: UInt64
    var slot = 0

    init(producers: [GenProducer], perSecond: Double, start: UInt64) {
        self.producers = producers; self.perSecond = perSecond; self.start = start
    }

    /// Returns false once every answer has sent all it will.
    func tick() -> Bool {
        guard !producers.isEmpty, producers.contains(where: { !$0.exhausted }) else { return false }
        let due = Int(Double(nowNanos() - start) * perSecond / 1e9)
        var touched = Set<Int>()
        while slot < due {
            let i = slot % producers.count
            producers[i].sendToken()
            touched.insert(i)
            slot += 1
        }
        for i in touched { producers[i].flush() }
        return true
    }
}

/// `psql "$DATABASE_URL" -XAtq -c SQL`, its output, or nil (no DATABASE_URL, no psql, an error).
func psql(_ sql: String) -> String? {
    guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"] else { return nil }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return nil }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { return nil }
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Rows inserted, updated and deleted in every AIIM table so far (PostgreSQL's statistics).
func tableWrites() -> [String: (ins: Int, upd: Int, del: Int)] {
    var out: [String: (Int, Int, Int)] = [:]
    for line in (psql("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables") ?? "").split(separator: "\n") {
        let f = line.split(separator: "|")
        guard f.count == 4 else { continue }
        out[String(f[0])] = (Int(f[1]) ?? 0, Int(f[2]) ?? 0, Int(f[3]) ?? 0)
    }
    return out
}

/// CPU seconds and RSS of a process and its children (PostgreSQL: the postmaster and its backends).
func processTreeStats(_ pid: String) -> (cpu: Double, rssMB: Double, processes: Int)? {
    guard var total = processStats(pid).map({ (cpu: $0.cpu, rssMB: $0.rssMB, processes: 1) }) else { return nil }
    for child in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where child.allSatisfy(\.isNumber) {
        guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
              let fields = stat.split(separator: ")").last?.split(separator: " "), fields.count > 1, fields[1] == pid,
              let s = processStats(child) else { continue }
        total.cpu += s.cpu; total.rssMB += s.rssMB; total.processes += 1
    }
    return total
}

func genLoad(_ o: Options) async throws {
    let gateway = o.string("gateway", "127.0.0.1:8080")
    let hostPort = gateway.split(separator: ":")
    guard hostPort.count == 2, let port = Int(hostPort[1]) else { print("--gateway must be HOST:PORT"); exit(64) }
    let host = String(hostPort[0])
    let answers = max(1, o.int("answers", 200)), tokens = max(1, o.int("tokens", 500))
    let watchers = max(1, o.int("watchers", 3)), rate = max(1, o.int("rate", 20_000))
    let auth = await Authenticator(secret: try Environment().require("JWT_SECRET"), issuer: nil, defaultTenant: "bench")
    let run = String(UUIDs.make().prefix(8))

    // Answer i: agent "gen-RUN-i" owns conversation i with watchers "gen-RUN-i-w0…".
    var agentTokens: [String] = [], watcherTokens: [[String]] = [], conversations: [String] = []
    for i in 0..<answers {
        let agent = "gen-\(run)-\(i)"
        let ws = (0..<watchers).map { "\(agent)-w\($0)" }
        let token = try await auth.mint(user: agent, tenant: "bench", ttl: .seconds(3600))
        agentTokens.append(token)
        var wt: [String] = []
        for w in ws { wt.append(try await auth.mint(user: w, tenant: "bench", ttl: .seconds(3600))) }
        watcherTokens.append(wt)
        let r = try await http("POST", "http://\(gateway)/api/aiim/conversations", token: token, body: .object([
            "type": "group", "member_ids": .array(ws.map { .string($0) }),
        ]))
        guard let id = r["conversation_id"]?.stringValue else { print("cannot create conversation: \(r)"); return }
        conversations.append(id)
    }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, o.int("threads", 1)))
    let loops = Array(group.makeIterator())
    let statsByLoop = loops.map { _ in GenStats() }
    // Watchers first (they must be connected when their answer starts), at most 100 at a time.
    var watcherHandlers: [NIOLoopBound<GenWatcher>] = []
    var producerHandlers = [NIOLoopBound<GenProducer>?](repeating: nil, count: answers)
    try await withThrowingTaskGroup(of: NIOLoopBound<GenWatcher>.self) { g in
        var n = 0
        for i in 0..<answers {
            for w in 0..<watchers {
                if n >= 100, let h = try await g.next() { watcherHandlers.append(h) }
                let k = i % loops.count
                let (loop, stats, token) = (loops[k], statsByLoop[k], watcherTokens[i][w])
                g.addTask {
                    try await connectGenClient(group: loop, host: host, port: port, token: token) { el in
                        GenWatcher(answer: i, tokens: tokens, stats: stats, eventLoop: el)
                    }
                }
                n += 1
            }
        }
        for try await h in g { watcherHandlers.append(h) }
    }
    try await withThrowingTaskGroup(of: (Int, NIOLoopBound<GenProducer>).self) { g in
        for i in 0..<answers {
            if i >= 100, let (j, h) = try await g.next() { producerHandlers[j] = h }
            let k = i % loops.count
            let (loop, stats, token, conv) = (loops[k], statsByLoop[k], agentTokens[i], conversations[i])
            g.addTask {
                (i, try await connectGenClient(group: loop, host: host, port: port, token: token) { el in
                    GenProducer(index: i, conversation: conv, tokens: tokens, stats: stats, eventLoop: el)
                })
            }
        }
        for try await (j, h) in g { producerHandlers[j] = h }
    }
    let producers = producerHandlers.compactMap { $0 }

    // PostgreSQL's statistics reach pg_stat_user_tables up to ~10 s after an idle backend's last write.
    try await Task.sleep(for: .seconds(11))
    let writesBefore = tableWrites()
    // Every answer starts before the clock does.
    var messageIDs: [String] = []
    for h in producers {
        let id = try await h.eventLoop.flatSubmit { h.value.start(run: run); return h.value.started.futureResult }.get()
        messageIDs.append(id)
    }
    try await Task.sleep(for: .milliseconds(300))

    let pids = o.string("pids", "").split(separator: " ").map(String.init)
    let before = pids.map { processStats($0) }
    let ownBefore = processStats("\(getpid())")
    let pgPID = o.values["pg-pid"].flatMap { $0.isEmpty ? nil : $0 }
    let pgBefore = pgPID.flatMap(processTreeStats)
    let perAnswer = Double(rate) / Double(answers)
    print(String(format: "gen-load: %d answers × %d tokens (one delta per generation.delta frame), %d watching devices each, offered %d deltas/s (%.0f per answer)",
                 answers, tokens, watchers, rate, perAnswer))
    fflush(nil)
    let start = nowNanos()
    for loop in loops {
        let mine = producers.filter { $0.eventLoop === loop }
        loop.execute {
            let pacer = GenPacer(producers: mine.map(\.value), perSecond: perAnswer * Double(mine.count), start: start)
            let bound = NIOLoopBound(pacer, eventLoop: loop)
            loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { task in
                if !bound.value.tick() { task.cancel() }
            }
        }
    }
    func onLoops<T: Sendable, H>(_ hs: [NIOLoopBound<H>], _ f: @escaping @Sendable (H) -> T) async throws -> [T] {
        var out: [T] = []
        for h in hs { out.append(try await h.eventLoop.submit { f(h.value) }.get()) }
        return out
    }
    // Sending lasts answers × tokens / rate; then every delta sent must be acknowledged.
    try await Task.sleep(for: .nanoseconds(Int64(Double(answers * tokens) / Double(rate) * 1e9)))
    let settleEnd = nowNanos() + 60_000_000_000
    while nowNanos() < settleEnd {
        let pending = try await onLoops(producers) { !($0.exhausted && $0.settled) }.filter { $0 }.count
        if pending == 0 { break }
        try await Task.sleep(for: .milliseconds(100))
    }
    let sendSecs = Double(nowNanos() - start) / 1e9

    // PostgreSQL rows while the answers are live (the end deletes them: they are folded into the message).
    let ids = messageIDs.map { "'\($0)'" }.joined(separator: ",")
    let rowsLive = psql("SELECT count(*) FROM generation_deltas WHERE message_id IN (\(ids)) GROUP BY message_id")?
        .split(separator: "\n").compactMap { Int($0) } ?? []

    // End every answer (completed with its last acknowledged offset, or failed).
    let endFutures = try await onLoops(producers) { p -> EventLoopFuture<String> in p.end(); return p.endedPromise.futureResult }
    var endStates: [String: Int] = [:]
    for f in endFutures { endStates[(try? await f.get()) ?? "no reply", default: 0] += 1 }
    // Let the last events land on the watchers.
    let watchEnd = nowNanos() + 10_000_000_000
    while nowNanos() < watchEnd {
        let open = try await onLoops(watcherHandlers) { !$0.summary.ended }.filter { $0 }.count
        if open == 0 { break }
        try await Task.sleep(for: .milliseconds(100))
    }
    let total = Double(nowNanos() - start) / 1e9
    let after = pids.map { processStats($0) }
    let ownAfter = processStats("\(getpid())")
    let pgAfter = pgPID.flatMap(processTreeStats)
    try await Task.sleep(for: .seconds(11))
    let writesAfter = tableWrites()

    var t = GenStats.Values()
    for s in statsByLoop {
        s.values.withLockedValue { v in
            t.deltasSent += v.deltasSent; t.accepted += v.accepted; t.acks += v.acks; t.ended += v.ended
            for (k, n) in v.errors { t.errors[k, default: 0] += n }
            t.firstSend = min(t.firstSend, v.firstSend); t.lastAck = max(t.lastAck, v.lastAck)
            t.producerEventFrames += v.producerEventFrames; t.producerEventBytes += v.producerEventBytes
            t.deltaFrames += v.deltaFrames; t.deltasReceived += v.deltasReceived; t.lastDelivery = max(t.lastDelivery, v.lastDelivery)
            t.delay.add(v.delay)
        }
    }
    let failures = try await onLoops(producers) { $0.failure }
    let acked = try await onLoops(producers) { $0.acked }
    let summaries = try await onLoops(watcherHandlers) { $0.summary }
    let firstSend = t.firstSend == .max ? start : t.firstSend
    let ackSecs = Double(max(t.lastAck, firstSend + 1) - firstSend) / 1e9
    let deliverSecs = Double(max(t.lastDelivery, firstSend + 1) - firstSend) / 1e9
    let sentSecs = Double(answers * tokens) / Double(rate)

    print(String(format: "deltas in: sent %d (%.0f/s offered over %.1f s); accepted by acks %d (%.0f/s, first send → last ack %.1f s); %d acks (%.2f deltas per ack)",
                 t.deltasSent, Double(t.deltasSent) / sentSecs, sentSecs, t.accepted, Double(t.accepted) / ackSecs, ackSecs, t.acks,
                 Double(t.accepted) / Double(max(1, t.acks))))
    print(String(format: "out to watchers: %d generation.delta frames (%.0f frames/s, first send → last delivery %.1f s) carrying %d deltas (%.2f per frame); the producers' own devices got %d event frames",
                 t.deltaFrames, Double(t.deltaFrames) / deliverSecs, deliverSecs, t.deltasReceived,
                 Double(t.deltasReceived) / Double(max(1, t.deltaFrames)), t.producerEventFrames))
    var failedBy: [String: Int] = [:]
    for f in failures { if let f { failedBy[f, default: 0] += 1 } }
    print("answers: \(answers - failures.compactMap { $0 }.count) sent every token; stopped at an error: \(failedBy.isEmpty ? "0" : failedBy.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")); error frames by code: \(t.errors.isEmpty ? "none" : t.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")); ends: \(endStates.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))")
    // Order per watcher: every acknowledged delta once, in offset order.
    var gaps = 0, dups = 0, reordered = 0, bad = 0, notEnded = 0
    var text = 0, deltaBytes = 0, eventBytes = 0, headerBytes = 0, frames = 0, deltas = 0
    for s in summaries {
        let expected = acked[s.answer]
        let missing = max(0, expected - s.distinct)
        gaps += missing; dups += s.duplicates; reordered += s.reordered
        if missing + s.duplicates + s.reordered > 0 { bad += 1 }
        if !s.ended { notEnded += 1 }
        text += s.textBytes; deltaBytes += s.deltaFrameBytes; eventBytes += s.eventBytes; headerBytes += s.headerBytes
        frames += s.deltaFrames; deltas += s.deltas
    }
    print("per watcher: missing deltas \(gaps), duplicates \(dups), reordered \(reordered) (watchers with any: \(bad) of \(summaries.count)); watchers that never saw the end: \(notEnded)")
    let w = Double(max(1, summaries.count))
    let meanText = Double(text) / w
    print(String(format: "wire per answer per watcher: text %.0f B; generation.delta frames %.0f B (%.1f× the text); all the answer's events %.0f B (%.1f×), %.1f× with WebSocket headers",
                 meanText, Double(deltaBytes) / w, Double(deltaBytes) / Double(max(1, text)), Double(eventBytes) / w,
                 Double(eventBytes) / Double(max(1, text)), Double(eventBytes + headerBytes) / Double(max(1, text))))
    print(String(format: "  per delta frame: %.0f B payload, of which %.1f B delta text (%.1f deltas): %.0f B of JSON around it",
                 Double(deltaBytes) / Double(max(1, frames)), Double(text) / Double(max(1, frames)), Double(deltas) / Double(max(1, frames)),
                 Double(deltaBytes - text) / Double(max(1, frames))))
    report("delta→device (watchers)", t.delay)
    if rowsLive.isEmpty && ProcessInfo.processInfo.environment["DATABASE_URL"] == nil {
        print("PostgreSQL: DATABASE_URL is not set, not counted")
    } else {
        let rows = rowsLive + [Int](repeating: 0, count: max(0, answers - rowsLive.count))
        print(String(format: "PostgreSQL: generation_deltas rows per answer before its end: min %d, mean %.1f, max %d (one per checkpoint; the end adds at most one more, folds them into the message and deletes them)",
                     rows.min() ?? 0, Double(rows.reduce(0, +)) / Double(answers), rows.max() ?? 0))
        var ins = 0, upd = 0, del = 0
        var byTable: [String] = []
        for (table, a) in writesAfter.sorted(by: { $0.key < $1.key }) {
            let b = writesBefore[table] ?? (0, 0, 0)
            let (i, u, d) = (a.ins - b.ins, a.upd - b.upd, a.del - b.del)
            guard i + u + d > 0 else { continue }
            ins += i; upd += u; del += d
            byTable.append(String(format: "%@ %.1f/%.1f/%.1f", table, Double(i) / Double(answers), Double(u) / Double(answers), Double(d) / Double(answers)))
        }
        print(String(format: "  row writes per answer, start to end (pg_stat_user_tables): %.1f inserted, %.1f updated, %.1f deleted — %@",
                     Double(ins) / Double(answers), Double(upd) / Double(answers), Double(del) / Double(answers), byTable.joined(separator: "; ")))
    }
    for (pid, (b, a)) in zip(pids, zip(before, after)) {
        if let b, let a {
            print(String(format: "pid %@: cpu %.1f s (%.0f%% of one core), rss %.0f MB", pid, a.cpu - b.cpu, (a.cpu - b.cpu) / total * 100, a.rssMB))
        }
    }
    if let b = pgBefore, let a = pgAfter {
        print(String(format: "PostgreSQL (pid %@ and its %d children): cpu %.1f s (%.0f%% of one core)", pgPID ?? "", a.processes - 1,
                     a.cpu - b.cpu, (a.cpu - b.cpu) / total * 100))
    }
    if let b = ownBefore, let a = ownAfter {
        print(String(format: "load generator (this process): cpu %.1f s (%.0f%% of one core)", a.cpu - b.cpu, (a.cpu - b.cpu) / total * 100))
    }
    _ = sendSecs
    fflush(nil)
}
