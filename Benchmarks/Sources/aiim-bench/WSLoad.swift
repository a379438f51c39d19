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

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// `aiim-bench ws-load`: N WebSocket clients in M conversations, written as plain NIO channel
// handlers so the load generator, which shares the machine with the system it measures, spends
// as little CPU per message as it can: no task per client, no lock shared between clients, one
// flush per read batch, and the send instant travels inside `client_msg_id` (no shared map).

/// Monotonic nanoseconds (the same clock on every thread).
func nowNanos() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

func newHistogram(digits: SignificantDigits = .three) -> Histogram<UInt64> {
    Histogram(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: digits)
}

/// What the clients of one event loop observed. Only that loop's channels write it, so its
/// lock is uncontended; the progress check and the report read it.
final class LoopStats: Sendable {
    struct Values {
        var ack = newHistogram(), deliver = newHistogram()
        var sent = 0, accepted = 0, delivered = 0, toOthers = 0, errors = 0, outOfOrder = 0, duplicates = 0
        /// When the last ack and the last delivery to another member arrived.
        var lastAck: UInt64 = 0, lastDelivery: UInt64 = 0
        /// `--timeline`: send→deliver by second of the run.
        var bySecond: [Int: Histogram<UInt64>] = [:]
    }
    let values = NIOLockedValueBox(Values())
}

/// The parameters every client of a run shares.
struct LoadPlan: Sendable {
    let run: String
    /// Messages in flight per client in the closed loop; 0 in the open loop (the pacer sends).
    let window: Int
    let timeline: Bool
}

/// One load client: a WebSocket for one user who sends into one conversation. Runs on its
/// channel's event loop only.
final class LoadHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let index: Int, user: String, conversation: String, plan: LoadPlan, stats: LoopStats
    /// Succeeds on the gateway's `connected` frame.
    let ready: EventLoopPromise<Void>
    private var context: ChannelHandlerContext?
    private var lastSeq: [String: Int] = [:]
    private var counter = 0
    private var start: UInt64 = 0, end: UInt64 = 0
    private var unflushed = false

    init(index: Int, user: String, conversation: String, plan: LoadPlan, stats: LoopStats, eventLoop: any EventLoop) {
        self.index = index; self.user = user; self.conversation = conversation; self.plan = plan; self.stats = stats
        ready = eventLoop.makePromise()
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        ready.fail(ChannelError.ioOnClosedChannel)
    }

    /// The run begins: the closed loop fills its window (the open loop waits for the pacer).
    func begin(start: UInt64, end: UInt64) {
        self.start = start; self.end = end
        for _ in 0..<plan.window { send() }
        flush()
    }

    /// Writes one `send_msg` (flushed by `flush()` or at the end of the read batch).
    func send() {
        guard let context else { return }
        let now = nowNanos()
        // run-client-counter-sentAt: unique, and it tells every receiver when it was sent.
        let cid = "\(plan.run)-\(index)-\(counter)-\(now)"
        counter += 1
        let text = #"{"type":"send_msg","conversation_id":"\#(conversation)","content":"load","client_msg_id":"\#(cid)"}"#
        let frame = WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: context.channel.allocator.buffer(string: text))
        context.write(wrapOutboundOut(frame), promise: nil)
        unflushed = true
        stats.values.withLockedValue { $0.sent += 1 }
    }

    func flush() {
        guard unflushed, let context else { return }
        unflushed = false
        context.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text: received(frame.unmaskedData)
        case .ping:
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)), promise: nil)
            unflushed = true
        case .connectionClose: context.close(promise: nil)
        default: break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) { flush() }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    /// The send instant inside a `client_msg_id` of this run.
    func sentAt(_ cid: String) -> UInt64? {
        guard cid.hasPrefix(plan.run), let last = cid.split(separator: "-").last else { return nil }
        return UInt64(last)
    }

    private func received(_ data: ByteBuffer) {
        guard let f = try? JSONValue(parsing: data.readableBytesView) else { return }
        let now = nowNanos()
        switch f["type"]?.stringValue {
        case "ack":
            guard let cid = f["client_msg_id"]?.stringValue, let at = sentAt(cid) else { return }
            stats.values.withLockedValue {
                _ = $0.ack.record((now &- at) / 1000)
                $0.accepted += 1
                $0.lastAck = now
            }
            if plan.window > 0, now < end { send() }
        case "error":
            stats.values.withLockedValue { $0.errors += 1 }
            if plan.window > 0, now < end { send() }
        case "connected":
            ready.succeed()
        case "ping":
            guard let context else { return }
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, maskKey: .random(),
                                                         data: context.channel.allocator.buffer(string: #"{"type":"pong"}"#))), promise: nil)
            unflushed = true
        case "event":
            guard f["data"]?["event"]?.stringValue == "message.created", let msg = f["data"]?["message"],
                  let conv = msg["conversation_id"]?.stringValue, let seq = msg["seq"]?.intValue else { return }
            let prev = lastSeq[conv]
            lastSeq[conv] = max(prev ?? 0, seq)
            let fromOther = msg["sender_id"]?.stringValue != user
            let at = fromOther ? msg["client_msg_id"]?.stringValue.flatMap(sentAt) : nil
            stats.values.withLockedValue { v in
                v.delivered += 1
                if let prev, seq <= prev { v.duplicates += 1 } else if let prev, seq != prev + 1 { v.outOfOrder += 1 }
                guard let at else { return }
                let us = (now &- at) / 1000
                _ = v.deliver.record(us)
                v.toOthers += 1
                v.lastDelivery = now
                if plan.timeline {
                    _ = v.bySecond[Int((at &- start) / 1_000_000_000), default: newHistogram(digits: .two)].record(us)
                }
            }
        default:
            break
        }
    }
}

/// Open loop: sends the offered rate of one event loop, round robin over its clients, checking
/// every millisecond how many messages are due.
final class Pacer {
    let clients: [LoadHandler]
    let perSecond: Double
    let start: UInt64, end: UInt64
    var sent = 0

    init(clients: [LoadHandler], perSecond: Double, start: UInt64, end: UInt64) {
        self.clients = clients; self.perSecond = perSecond; self.start = start; self.end = end
    }

    /// Returns false once the run is over.
    func tick() -> Bool {
        let now = nowNanos()
        guard now < end, !clients.isEmpty else { return false }
        let due = Int(Double(now - start) * perSecond / 1e9)
        var touched: [Int] = []
        while sent < due {
            let i = sent % clients.count
            clients[i].send()
            touched.append(i)
            sent += 1
        }
        for i in touched { clients[i].flush() }
        return true
    }
}

/// Opens a WebSocket to the gateway with `make`'s handler on it (the ws-load, abuse and
/// gen-load clients).
func connectLoadClient<H: ChannelHandler & SendableMetatype>(
    group: any EventLoopGroup, host: String, port: Int, token: String,
    make: @escaping @Sendable (any EventLoop) -> H
) async throws -> NIOLoopBound<H> {
    let upgraded: EventLoopFuture<NIOLoopBound<H>?> = try await ClientBootstrap(group: group)
        .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        .connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgrader = NIOTypedWebSocketClientUpgrader<NIOLoopBound<H>?>(maxFrameSize: 1 << 20) { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = make(channel.eventLoop)
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return NIOLoopBound(handler, eventLoop: channel.eventLoop)
                    }
                }
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: "\(host):\(port)")
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api/aiim/ws?token=\(token)", headers: headers)
                let config = NIOTypedHTTPClientUpgradeConfiguration<NIOLoopBound<H>?>(
                    upgradeRequestHead: head, upgraders: [upgrader],
                    notUpgradingCompletionHandler: { $0.eventLoop.makeSucceededFuture(nil) })
                var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: config)
                // The gateway's first frame may arrive in the same read as its 101 response.
                pipeline.leftOverBytesStrategy = .forwardBytes
                return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
            }
        }
    guard let handler = try await upgraded.get() else { throw AIIMError.badRequest("the gateway refused the WebSocket upgrade") }
    return handler
}

func http(_ method: String, _ url: String, token: String, body: JSONValue) async throws -> JSONValue {
    var req = URLRequest(url: URL(string: url)!)
    req.httpMethod = method
    req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
    req.httpBody = Data(body.jsonString().utf8)
    let (data, _) = try await URLSession.shared.data(for: req)
    return try JSONValue(parsing: data)
}

func wsLoad(_ o: Options) async throws {
    let gateway = o.string("gateway", "127.0.0.1:8080")
    let hostPort = gateway.split(separator: ":")
    guard hostPort.count == 2, let port = Int(hostPort[1]) else { print("--gateway must be HOST:PORT"); exit(64) }
    let host = String(hostPort[0])
    let clients = o.int("clients", 20), conversations = max(1, o.int("conversations", 10))
    let rate = o.int("rate", 1000), seconds = o.int("seconds", 10)
    let window = rate == 0 ? max(1, o.int("window", 4)) : 0
    let secret = try Environment().require("JWT_SECRET")
    let auth = await Authenticator(secret: secret, issuer: nil, defaultTenant: "bench")
    let run = String(UUIDs.make().prefix(8))
    let users = (0..<clients).map { "bench-\(run)-\($0)" }
    var tokens: [String] = []
    for u in users { tokens.append(try await auth.mint(user: u, tenant: "bench", ttl: .seconds(3600))) }
    // Conversation k holds the users i with i % conversations == k (1:1 when clients = 2 × conversations).
    var convOf: [Int: String] = [:]
    for k in 0..<conversations {
        let members = users.indices.filter { $0 % conversations == k }
        guard let owner = members.first else { continue }
        let r = try await http("POST", "http://\(gateway)/api/aiim/conversations", token: tokens[owner], body: .object([
            "type": "group", "member_ids": .array(members.dropFirst().map { .string(users[$0]) }),
        ]))
        guard let id = r["conversation_id"]?.stringValue else { print("cannot create conversation: \(r)"); return }
        for m in members { convOf[m] = id }
    }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, o.int("threads", 1)))
    let loops = Array(group.makeIterator())
    let statsByLoop = loops.map { _ in LoopStats() }
    let plan = LoadPlan(run: run, window: window, timeline: o.values["timeline"] != nil)
    // Connect (at most 100 at a time), each client on the loop of its index.
    var handlers = [NIOLoopBound<LoadHandler>?](repeating: nil, count: clients)
    try await withThrowingTaskGroup(of: (Int, NIOLoopBound<LoadHandler>).self) { g in
        for i in 0..<clients {
            if i >= 100, let (j, h) = try await g.next() { handlers[j] = h }
            let loop = loops[i % loops.count], stats = statsByLoop[i % loops.count]
            let (user, conv, token) = (users[i], convOf[i] ?? "", tokens[i])
            g.addTask {
                let h = try await connectLoadClient(group: loop, host: host, port: port, token: token) { el in
                    LoadHandler(index: i, user: user, conversation: conv, plan: plan, stats: stats, eventLoop: el)
                }
                let ready = h.eventLoop.flatSubmit { h.value.ready.futureResult }
                h.eventLoop.scheduleTask(in: .seconds(15)) { h.value.ready.fail(ChannelError.connectTimeout(.seconds(15))) }
                try await ready.get()
                return (i, h)
            }
        }
        for try await (j, h) in g { handlers[j] = h }
    }
    let connected = handlers.compactMap { $0 }
    try await Task.sleep(for: .milliseconds(300))

    let pids = o.string("pids", "").split(separator: " ").map(String.init)
    let before = pids.map { processStats($0) }
    let ownBefore = processStats("\(getpid())")
    print("ws-load: \(clients) clients, \(conversations) conversations, offered \(rate == 0 ? "max (closed loop, \(window) in flight per client)" : "\(rate) msg/s"), \(seconds) s")
    fflush(nil)
    let start = nowNanos(), end = start + UInt64(seconds) * 1_000_000_000
    for h in connected { h.eventLoop.execute { h.value.begin(start: start, end: end) } }
    if rate > 0 {
        // One pacer per event loop, each sending its share of the offered rate.
        for loop in loops {
            let mine = connected.filter { $0.eventLoop === loop }
            loop.execute {
                let pacer = Pacer(clients: mine.map(\.value), perSecond: Double(rate) * Double(mine.count) / Double(connected.count),
                                  start: start, end: end)
                let bound = NIOLoopBound(pacer, eventLoop: loop)
                loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { task in
                    if !bound.value.tick() { task.cancel() }
                }
            }
        }
    }
    func totals() -> LoopStats.Values {
        var t = LoopStats.Values()
        for s in statsByLoop {
            s.values.withLockedValue { v in
                t.sent += v.sent; t.accepted += v.accepted; t.delivered += v.delivered; t.toOthers += v.toOthers
                t.errors += v.errors; t.outOfOrder += v.outOfOrder; t.duplicates += v.duplicates
                t.lastAck = max(t.lastAck, v.lastAck); t.lastDelivery = max(t.lastDelivery, v.lastDelivery)
                t.ack.add(v.ack); t.deliver.add(v.deliver)
                for (second, h) in v.bySecond { t.bySecond[second, default: newHistogram(digits: .two)].add(h) }
            }
        }
        return t
    }
    try await Task.sleep(for: .nanoseconds(Int64(end - nowNanos())))
    let sendSecs = Double(nowNanos() - start) / 1e9
    // Let in-flight messages land.
    let drainEnd = nowNanos() + 10_000_000_000
    while nowNanos() < drainEnd {
        let t = statsByLoop.reduce((0, 0)) { acc, s in s.values.withLockedValue { (acc.0 + $0.sent, acc.1 + $0.accepted + $0.errors) } }
        if t.1 >= t.0 { break }
        try await Task.sleep(for: .milliseconds(100))
    }
    try await Task.sleep(for: .milliseconds(500))
    let total = Double(nowNanos() - start) / 1e9
    let t = totals()
    let ackSecs = max(sendSecs, Double(t.lastAck &- start) / 1e9)
    let deliverSecs = max(sendSecs, Double(t.lastDelivery &- start) / 1e9)
    let membersPer = Double(clients) / Double(conversations)
    print(String(format: "sent %d in %.1f s (%.0f msg/s offered); accepted %d (%.0f msg/s); delivered to the other members %d (%.0f msg/s); events on all devices incl. the sender's own %d (%.1f devices per conversation)",
                 t.sent, sendSecs, Double(t.sent) / sendSecs, t.accepted, Double(t.accepted) / ackSecs, t.toOthers, Double(t.toOthers) / deliverSecs,
                 t.delivered, membersPer))
    print("not acknowledged when the run ended (still queued, or lost): \(t.sent - t.accepted - t.errors), errors: \(t.errors), out of order: \(t.outOfOrder), duplicates: \(t.duplicates)")
    report("send→ack", t.ack)
    report("send→deliver (other members)", t.deliver)
    if plan.timeline {
        for (second, h) in t.bySecond.sorted(by: { $0.key < $1.key }) {
            print(String(format: "  second %2d: n=%d p50=%.2fms p99=%.2fms max=%.2fms", second, h.totalCount,
                         Double(h.valueAtPercentile(50)) / 1000, Double(h.valueAtPercentile(99)) / 1000, Double(h.max) / 1000))
        }
    }
    for (pid, b) in zip(pids, before) {
        if let b, let a = processStats(pid) {
            print(String(format: "pid %@: cpu %.1f s (%.0f%% of one core), rss %.0f MB", pid, a.cpu - b.cpu, (a.cpu - b.cpu) / total * 100, a.rssMB))
        }
    }
    if let b = ownBefore, let a = processStats("\(getpid())") {
        print(String(format: "load generator (this process): cpu %.1f s (%.0f%% of one core)", a.cpu - b.cpu, (a.cpu - b.cpu) / total * 100))
    }
    fflush(nil)
    // The clients stay connected until the process exits (a graceful shutdown of 1,000
    // sockets measures nothing).
}
