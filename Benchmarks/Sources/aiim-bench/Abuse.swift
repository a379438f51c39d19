import AIIMConfiguration
import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Foundation
import GatewayCore
import Histogram
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// `aiim-bench abuse --gateway HOST:PORT --scenario flood|slow-readers|stream-budget [--seconds S] [--pids "GW …"]`
// (JWT_SECRET; stream-budget also REDIS_URL): what one abusive client costs everyone else.
// Numbers are printed, never asserted.
//   flood          a legitimate pair sends in a closed loop, first alone, then while 2,000
//                  requests/s with random `aiim_` keys arrive: send→ack / send→deliver p50/p99 of both
//   slow-readers   200 WebSocket clients that never read, members of one group into which
//                  max-size messages are sent: gateway RSS before, peak and after, against the
//                  byte budget (WS_SEND_QUEUE_BYTES)
//   stream-budget  one user sends max-size messages as fast as the rate limit lets them:
//                  Redis `used_memory` and the events stream's length over time

func abuse(_ o: Options) async throws {
    let gateway = o.string("gateway", "127.0.0.1:8080")
    let hostPort = gateway.split(separator: ":")
    guard hostPort.count == 2, let port = Int(hostPort[1]) else { print("--gateway must be HOST:PORT"); exit(64) }
    let bench = AbuseBench(host: String(hostPort[0]), port: port, auth: await Authenticator(
        secret: try Environment().require("JWT_SECRET"), issuer: nil, defaultTenant: "bench"))
    let seconds = o.int("seconds", 10)
    let pids = o.string("pids", "").split(separator: " ").map(String.init)
    switch o.string("scenario", "") {
    case "flood": try await bench.flood(seconds: seconds, rate: o.int("rate", 2000))
    case "slow-readers": try await bench.slowReaders(clients: o.int("clients", 200), messages: o.int("messages", 300), gatewayPID: pids.first,
                                                     budget: o.int("budget", 4 << 20))
    case "stream-budget": try await bench.streamBudget(seconds: seconds)
    default: print("--scenario flood | slow-readers | stream-budget"); exit(64)
    }
    fflush(nil)
}

struct AbuseBench {
    let host: String
    let port: Int
    let auth: Authenticator
    let run = String(UUIDs.make().prefix(8))
    var base: String { "http://\(host):\(port)" }

    func users(_ n: Int, _ tag: String) async throws -> [(name: String, token: String)] {
        var out: [(String, String)] = []
        for i in 0..<n {
            let name = "abuse-\(run)-\(tag)-\(i)"
            out.append((name, try await auth.mint(user: name, tenant: "bench", ttl: .seconds(3600))))
        }
        return out
    }

    func conversation(owner: String, members: [String]) async throws -> String {
        let r = try await http("POST", "\(base)/api/aiim/conversations", token: owner, body: .object([
            "type": "group", "member_ids": .array(members.map { .string($0) }),
        ]))
        guard let id = r["conversation_id"]?.stringValue else { throw AIIMError.badRequest("cannot create conversation: \(r)") }
        return id
    }

    // MARK: (a) invalid-key flood

    /// A connected 1:1 pair, ready to send in a closed loop (one message in flight each).
    func legitimatePair(tag: String) async throws -> (clients: [NIOLoopBound<LoadHandler>], stats: LoopStats) {
        let pair = try await users(2, tag)
        let conv = try await conversation(owner: pair[0].token, members: [pair[1].name])
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let stats = LoopStats()
        let plan = LoadPlan(run: run + tag, window: 1, timeline: false)
        var clients: [NIOLoopBound<LoadHandler>] = []
        for (i, u) in pair.enumerated() {
            let h = try await connectLoadClient(group: loop, host: host, port: port, token: u.token) { el in
                LoadHandler(index: i, user: u.name, conversation: conv, plan: plan, stats: stats, eventLoop: el)
            }
            try await h.eventLoop.flatSubmit { h.value.ready.futureResult }.get()
            clients.append(h)
        }
        return (clients, stats)
    }

    /// Runs a pair's closed loop for `seconds`; its numbers.
    func send(_ pair: (clients: [NIOLoopBound<LoadHandler>], stats: LoopStats), seconds: Int) async throws -> LoopStats.Values {
        let start = nowNanos(), end = start + UInt64(seconds) * 1_000_000_000
        for h in pair.clients { h.eventLoop.execute { h.value.begin(start: start, end: end) } }
        try await Task.sleep(for: .seconds(seconds + 1))
        return pair.stats.values.withLockedValue { $0 }
    }

    func flood(seconds: Int, rate: Int) async throws {
        print("abuse flood: a legitimate 1:1 pair (closed loop, 1 in flight each), \(seconds) s alone, then another pair \(seconds) s with \(rate) requests/s of random aiim_ keys")
        // Both pairs connect first: the flood comes from this machine's address too, which is
        // then over its failed-authentication budget (an open socket needs no more checks).
        let quietPair = try await legitimatePair(tag: "quiet")
        let loudPair = try await legitimatePair(tag: "loud")
        let quiet = try await send(quietPair, seconds: seconds)
        report("without flood: send→ack", quiet.ack)
        report("without flood: send→deliver", quiet.deliver)
        print("without flood: \(quiet.accepted) messages acknowledged, \(quiet.errors) errors")
        fflush(nil)
        let counts = FloodCounts()
        let connections = 20
        var floods: [any Channel] = []
        for _ in 0..<connections {
            floods.append(try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { [host, port] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            FloodHandler(host: host, port: port, perSecond: Double(rate) / Double(connections), counts: counts))
                    }
                }
                .connect(host: host, port: port).get())
        }
        let floodStart = ContinuousClock.now
        try await Task.sleep(for: .milliseconds(500))
        let loud = try await send(loudPair, seconds: seconds)
        let floodSecs = Double((ContinuousClock.now - floodStart).components.seconds)
        for c in floods { c.close(promise: nil) }
        report("with flood: send→ack", loud.ack)
        report("with flood: send→deliver", loud.deliver)
        print("with flood: \(loud.accepted) messages acknowledged, \(loud.errors) errors")
        let c = counts.values.withLockedValue { $0 }
        print(String(format: "flood: %d requests sent (%.0f/s), answers by status: %@ (401: checked, a bus call for each new key; 429: refused before any check)",
                     c.sent, Double(c.sent) / max(1, floodSecs), c.statuses.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")))
    }

    // MARK: (b) sockets that never read

    func slowReaders(clients: Int, messages: Int, gatewayPID: String?, budget: Int) async throws {
        print("abuse slow-readers: \(clients) WebSocket clients that never read, in one group; \(messages) messages of 32,000 characters sent into it")
        let sender = try await users(1, "sender")[0]
        let silent = try await users(clients, "silent")
        let conv = try await conversation(owner: sender.token, members: silent.map(\.name))
        let rssBefore = gatewayPID.flatMap(processStats)?.rssMB ?? 0
        var channels: [any Channel] = []
        for u in silent { channels.append(try await connectSilentClient(token: u.token)) }
        try await Task.sleep(for: .milliseconds(500))
        let rssConnected = gatewayPID.flatMap(processStats)?.rssMB ?? 0
        print(String(format: "gateway RSS: %.0f MB before, %.0f MB with %d idle sockets", rssBefore, rssConnected, clients))
        fflush(nil)
        let peak = NIOLockedValueBox(rssConnected)
        let sampler = Task {
            while !Task.isCancelled {
                if let rss = gatewayPID.flatMap(processStats)?.rssMB { peak.withLockedValue { $0 = max($0, rss) } }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        let text = String(repeating: "x", count: 32_000)
        let start = ContinuousClock.now
        var sent = 0, refused = 0
        for i in 0..<messages {
            let r = try await http("POST", "\(base)/api/aiim/messages", token: sender.token,
                                   body: .object(["conversation_id": .string(conv), "content": .string("\(i) \(text)")]))
            if r["message"] != nil { sent += 1 } else {
                refused += 1
                try await Task.sleep(for: .milliseconds(100))  // the per-user rate limit
            }
        }
        let secs = Double((ContinuousClock.now - start).components.seconds)
        try await Task.sleep(for: .seconds(3))  // the overflowed sockets are dropped after WS_CLOSE_GRACE_MS
        sampler.cancel()
        let rssAfter = gatewayPID.flatMap(processStats)?.rssMB ?? 0
        let metrics = (try? String(contentsOf: URL(string: "\(base)/metrics")!, encoding: .utf8)) ?? ""
        let slowClosed = metrics.split(separator: "\n").first { $0.hasPrefix("aiim_ws_slow_consumer_closed_total") }.map(String.init) ?? "aiim_ws_slow_consumer_closed_total ?"
        let bound = rssConnected + Double(clients) * 2 * Double(budget) / 1_048_576
        print(String(format: "sent %d messages in %.0f s (%d refused by the rate limit): %.0f MB offered to each socket, %.0f MB in all",
                     sent, secs, refused, Double(sent) * 32_000 / 1_048_576, Double(sent * clients) * 32_000 / 1_048_576))
        print(String(format: "gateway RSS: peak %.0f MB, after %.0f MB; budget bound %.0f MB (RSS with the sockets + %d × 2 × WS_SEND_QUEUE_BYTES %d)",
                     peak.withLockedValue { $0 }, rssAfter, bound, clients, budget))
        // (A client that never reads never sees the gateway's FIN: the gateway's counter tells.)
        print(slowClosed)
        for c in channels { c.close(promise: nil) }
    }

    /// A WebSocket client that reads its `connected` frame and then nothing, ever.
    func connectSilentClient(token: String) async throws -> any Channel {
        let upgraded: EventLoopFuture<(any Channel)?> = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { [host, port] channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOTypedWebSocketClientUpgrader<(any Channel)?>(maxFrameSize: 1 << 20) { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(SilentHandler())
                            return channel
                        }
                    }
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: "\(host):\(port)")
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/api/aiim/ws?token=\(token)", headers: headers)
                    let config = NIOTypedHTTPClientUpgradeConfiguration<(any Channel)?>(
                        upgradeRequestHead: head, upgraders: [upgrader],
                        notUpgradingCompletionHandler: { $0.eventLoop.makeSucceededFuture(nil) })
                    var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: config)
                    pipeline.leftOverBytesStrategy = .forwardBytes
                    return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
                }
            }
        guard let channel = try await upgraded.get() else { throw AIIMError.badRequest("the gateway refused the WebSocket upgrade") }
        return channel
    }

    // MARK: (c) the stream budget

    func streamBudget(seconds: Int) async throws {
        LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
        let redis = try RedisClient(url: try Environment().require("REDIS_URL"), poolSize: 1, tls: RedisTLSFiles(Environment()), logger: Logger(label: "bench"))
        let pair = try await users(2, "stream")
        let conv = try await conversation(owner: pair[0].token, members: [pair[1].name])
        let text = String(repeating: "z", count: 32_000)
        func sample() async throws -> (mb: Double, events: Int64, commands: Int64) {
            let info = try await redis.command(["INFO", "memory"]).text ?? ""
            let used = info.split(separator: "\r\n").first { $0.hasPrefix("used_memory:") }.flatMap { Double($0.dropFirst(12)) } ?? 0
            let events = try await redis.command(["XLEN", StreamNames.events]).int ?? 0
            let commands = try await redis.command(["XLEN", StreamNames.commands(.messaging)]).int ?? 0
            return (used / 1_048_576, events, commands)
        }
        let first = try await sample()
        print(String(format: "abuse stream-budget: one user sends 32,000-character messages (4 in flight) for %d s; Redis used_memory %.1f MB, aiim:events %d entries, aiim:cmd:messaging %d entries at the start",
                     seconds, first.mb, first.events, first.commands))
        let accepted = NIOLockedValueBox(0), limited = NIOLockedValueBox(0)
        let end = ContinuousClock.now + .seconds(seconds)
        let senders = (0..<4).map { w in
            Task {
                var i = 0
                while ContinuousClock.now < end {
                    i += 1
                    let r = try? await http("POST", "\(base)/api/aiim/messages", token: pair[0].token,
                                            body: .object(["conversation_id": .string(conv), "content": .string("\(w)-\(i) \(text)")]))
                    if r?["message"] != nil { accepted.withLockedValue { $0 += 1 } } else {
                        limited.withLockedValue { $0 += 1 }
                        try? await Task.sleep(for: .milliseconds(200))
                    }
                }
            }
        }
        var last = first
        let start = ContinuousClock.now
        while ContinuousClock.now < end {
            try await Task.sleep(for: .seconds(2))
            last = try await sample()
            print(String(format: "  t=%3.0f s: %d messages accepted (%d refused), used_memory %.1f MB (+%.1f), aiim:events %d, aiim:cmd:messaging %d",
                         Double((ContinuousClock.now - start).components.seconds), accepted.withLockedValue { $0 }, limited.withLockedValue { $0 },
                         last.mb, last.mb - first.mb, last.events, last.commands))
            fflush(nil)
        }
        for s in senders { await s.value }
        let n = accepted.withLockedValue { $0 }
        if n > 0 {
            let perMessage = (last.mb - first.mb) * 1_048_576 / Double(n)
            print(String(format: "Redis grew %.0f bytes per accepted message; at STREAM_MAXLEN 100000 entries per stream that is ~%.1f GB",
                         perMessage, perMessage * 100_000 / 1_073_741_824))
        }
        await redis.shutdown()
    }
}

/// Reads the upgrade's first frames, then stops reading for good (autoRead off).
final class SilentHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
    }
}

final class FloodCounts: Sendable {
    struct Values {
        var sent = 0
        var statuses: [Int: Int] = [:]
    }
    let values = NIOLockedValueBox(Values())
}

/// One keep-alive connection sending `perSecond` requests with fresh random API keys, paced
/// every 10 ms; counts the answers by status.
final class FloodHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let host: String, port: Int, perSecond: Double, counts: FloodCounts
    private var tail: [UInt8] = []
    private var task: RepeatedTask?
    private var due = 0.0

    init(host: String, port: Int, perSecond: Double, counts: FloodCounts) {
        self.host = host; self.port = port; self.perSecond = perSecond; self.counts = counts
    }

    func channelActive(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        task = context.eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(10)) { _ in
            let (handler, context) = bound.value
            handler.tick(context)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        task?.cancel()
        context.fireChannelInactive()
    }

    private func tick(_ context: ChannelHandlerContext) {
        due += perSecond / 100
        var n = 0
        while due >= 1 {
            due -= 1
            n += 1
            let key = "aiim_" + (0..<3).map { _ in UUIDs.make().replacingOccurrences(of: "-", with: "") }.joined()
            let request = "GET /api/aiim/conversations HTTP/1.1\r\nHost: \(host):\(port)\r\nAuthorization: Bearer \(key)\r\n\r\n"
            context.write(wrapOutboundOut(context.channel.allocator.buffer(string: request)), promise: nil)
        }
        if n > 0 {
            context.flush()
            counts.values.withLockedValue { $0.sent += n }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Status lines ("HTTP/1.1 429 …") in the byte stream; the JSON bodies never contain one.
        let bytes = tail + Array(unwrapInboundIn(data).readableBytesView)
        let marker = Array("HTTP/1.1 ".utf8)
        var found: [Int] = []
        var i = 0
        while i + marker.count + 3 <= bytes.count {
            if bytes[i] == marker[0], Array(bytes[i..<(i + marker.count)]) == marker,
               let code = Int(String(decoding: bytes[(i + marker.count)..<(i + marker.count + 3)], as: UTF8.self)) {
                found.append(code)
                i += marker.count + 3
            } else {
                i += 1
            }
        }
        tail = Array(bytes[max(i, bytes.count - marker.count - 2)...])
        if !found.isEmpty {
            counts.values.withLockedValue { v in for c in found { v.statuses[c, default: 0] += 1 } }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}
