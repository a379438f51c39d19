import AIIMRedis
import AIIMShared
import Foundation
import GatewayCore
import Histogram
import HummingbirdWSClient
import Logging
import NIOConcurrencyHelpers
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

// aiim-bench: measures a running AIIM (see Benchmarks/README.md).
//   aiim-bench bus-rtt   --requests 10000 [--concurrency 1]            (REDIS_URL)
//   aiim-bench ws-load   --gateway 127.0.0.1:PORT --clients 20 --conversations 10
//                        [--rate 1000 | --rate 0 --window 4 (as fast as possible)] --seconds 10 [--pids "1 2"]  (JWT_SECRET)

struct Options {
    var values: [String: String] = [:]
    init(_ args: ArraySlice<String>) {
        var i = args.startIndex
        while i < args.endIndex {
            if args[i].hasPrefix("--"), i + 1 < args.endIndex { values[String(args[i].dropFirst(2))] = args[i + 1]; i += 2 } else { i += 1 }
        }
    }
    func int(_ k: String, _ d: Int) -> Int { values[k].flatMap(Int.init) ?? d }
    func string(_ k: String, _ d: String) -> String { values[k] ?? d }
}

func micros(_ d: Duration) -> Int64 { d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000 }

func report(_ name: String, _ h: Histogram<UInt64>) {
    func ms(_ q: Double) -> String { String(format: "%.2f", Double(h.valueAtPercentile(q)) / 1000) }
    print("\(name): n=\(h.totalCount) p50=\(ms(50))ms p99=\(ms(99))ms p999=\(ms(99.9))ms max=\(String(format: "%.2f", Double(h.max) / 1000))ms")
}

/// CPU seconds and RSS of a process, from /proc.
func processStats(_ pid: String) -> (cpu: Double, rssMB: Double)? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    let cpu = ((Double(fields.count > 12 ? fields[11] : "0") ?? 0) + (Double(fields.count > 12 ? fields[12] : "0") ?? 0)) / ticks
    let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?
        .split(separator: " ").compactMap { Double($0) }.first ?? 0
    return (cpu, rss / 1024)
}

func busRTT(_ o: Options) async throws {
    LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
    let logger = Logger(label: "bench")
    let redis = try RedisClient(url: try Environment().require("REDIS_URL"), poolSize: 8, logger: logger)
    let bus = BusClient(redis: redis, instance: "bench-\(getpid())", logger: logger)
    let reader = Task { try await bus.run() }
    let n = o.int("requests", 10_000), conc = o.int("concurrency", 1)
    for _ in 0..<100 { _ = try await bus.request(PingCommand(), timeout: .seconds(5)) }  // warm-up
    let hist = NIOLockedValueBox(Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { g in
        for w in 0..<conc {
            g.addTask {
                for _ in stride(from: w, to: n, by: conc) {
                    let t = ContinuousClock.now
                    _ = try await bus.request(PingCommand(), timeout: .seconds(5))
                    let us = UInt64(max(0, micros(ContinuousClock.now - t)))
                    hist.withLockedValue { _ = $0.record(us) }
                }
            }
        }
        try await g.waitForAll()
    }
    let secs = Double(micros(ContinuousClock.now - start)) / 1e6
    print(String(format: "bus round trip gateway→messaging→gateway, %d requests, concurrency %d, %.0f req/s", n, conc, Double(n) / secs))
    report("round trip", hist.withLockedValue { $0 })
    reader.cancel()
}

/// A load client: one WebSocket per user, sending into its conversation.
final class LoadClient: Sendable {
    let writer = NIOLockedValueBox<WebSocketOutboundWriter?>(nil)
    let sentAt = NIOLockedValueBox<[String: ContinuousClock.Instant]>([:])
    let lastSeq = NIOLockedValueBox<[String: Int]>([:])
    /// Closed loop (`--rate 0`): acks not yet received free a slot of the window.
    let acked: AsyncStream<Void>.Continuation
    let acks: AsyncStream<Void>
    let stats: Stats
    let user: String
    init(user: String, stats: Stats) {
        self.user = user; self.stats = stats
        (acks, acked) = AsyncStream.makeStream(of: Void.self)
    }
}

final class Stats: Sendable {
    let ack = NIOLockedValueBox(Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
    let deliver = NIOLockedValueBox(Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
    let counters = NIOLockedValueBox((accepted: 0, delivered: 0, toOthers: 0, errors: 0, outOfOrder: 0, duplicates: 0))
    /// client_msg_id → send instant, for send→deliver latency seen by other members.
    let sendTimes = NIOLockedValueBox<[String: ContinuousClock.Instant]>([:])
    /// When the last ack and the last delivery to another member arrived: rates are counted up to them.
    let lastAck = NIOLockedValueBox(ContinuousClock.now)
    let lastDelivery = NIOLockedValueBox(ContinuousClock.now)
    /// `--timeline`: send→deliver latencies by second of the run, to see when a tail happens.
    let bySecond = NIOLockedValueBox<[Int: Histogram<UInt64>]>([:])
    let start = NIOLockedValueBox(ContinuousClock.now)
}

func http(_ method: String, _ url: String, token: String, body: JSONValue) async throws -> JSONValue {
    var req = URLRequest(url: URL(string: url)!)
    req.httpMethod = method
    req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
    req.httpBody = Data(body.jsonString().utf8)
    let (data, _) = try await URLSession.shared.data(for: req)
    return try JSONDecoder().decode(JSONValue.self, from: data)
}

func wsLoad(_ o: Options) async throws {
    LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }
    let gateway = o.string("gateway", "127.0.0.1:8080")
    let clients = o.int("clients", 20), conversations = max(1, o.int("conversations", 10))
    let rate = o.int("rate", 1000), seconds = o.int("seconds", 10)
    let secret = try Environment().require("JWT_SECRET")
    let auth = await Authenticator(secret: secret, issuer: nil, defaultTenant: "bench")
    let run = UUIDs.make().prefix(8)
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
    let stats = Stats()
    let tokenList = tokens
    let load = users.map { LoadClient(user: $0, stats: stats) }
    var tasks: [Task<Void, Never>] = []
    for (i, c) in load.enumerated() {
        tasks.append(Task {
            _ = try? await WebSocketClient.connect(url: "ws://\(gateway)/api/aiim/ws?token=\(tokenList[i])", logger: Logger(label: "b")) { inbound, outbound, _ in
                c.writer.withLockedValue { $0 = outbound }
                for try await m in inbound.messages(maxSize: 1 << 20) {
                    guard case .text(let t) = m, let f = try? JSONValue(parsing: t) else { continue }
                    let now = ContinuousClock.now
                    if f["type"]?.stringValue == "ack", let cid = f["client_msg_id"]?.stringValue,
                       let at = c.sentAt.withLockedValue({ $0.removeValue(forKey: cid) }) {
                        stats.ack.withLockedValue { _ = $0.record(UInt64(max(0, micros(now - at)))) }
                        stats.counters.withLockedValue { $0.accepted += 1 }
                        stats.lastAck.withLockedValue { $0 = now }
                        c.acked.yield()
                    } else if f["type"]?.stringValue == "error" {
                        stats.counters.withLockedValue { $0.errors += 1 }
                        c.acked.yield()
                    } else if f["data"]?["event"]?.stringValue == "message.created", let msg = f["data"]?["message"],
                              let conv = msg["conversation_id"]?.stringValue, let seq = msg["seq"]?.intValue {
                        let prev = c.lastSeq.withLockedValue { s -> Int? in defer { s[conv] = max(s[conv] ?? 0, seq) }; return s[conv] }
                        stats.counters.withLockedValue {
                            $0.delivered += 1
                            if let prev, seq <= prev { $0.duplicates += 1 } else if let prev, seq != prev + 1 { $0.outOfOrder += 1 }
                        }
                        if msg["sender_id"]?.stringValue != c.user, let cid = msg["client_msg_id"]?.stringValue,
                           let at = stats.sendTimes.withLockedValue({ $0[cid] }) {
                            stats.deliver.withLockedValue { _ = $0.record(UInt64(max(0, micros(now - at)))) }
                            stats.counters.withLockedValue { $0.toOthers += 1 }
                            let second = Int(micros(at - stats.start.withLockedValue { $0 }) / 1_000_000)
                            stats.bySecond.withLockedValue {
                                _ = $0[second, default: Histogram(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .two)]
                                    .record(UInt64(max(0, micros(now - at))))
                            }
                            stats.lastDelivery.withLockedValue { $0 = now }
                        }
                    }
                }
            }
        })
    }
    for c in load { while c.writer.withLockedValue({ $0 }) == nil { try await Task.sleep(for: .milliseconds(20)) } }
    try await Task.sleep(for: .milliseconds(300))
    let pids = o.string("pids", "").split(separator: " ").map(String.init)
    let before = pids.map { processStats($0) }
    let window = max(1, o.int("window", 4))
    let conversationOf = convOf
    print("ws-load: \(clients) clients, \(conversations) conversations, offered \(rate == 0 ? "max (closed loop, \(window) in flight per client)" : "\(rate) msg/s"), \(seconds) s")
    let start = ContinuousClock.now
    stats.start.withLockedValue { $0 = start }
    let end = start + .seconds(seconds)
    let sentCount = NIOLockedValueBox(0)
    /// Sends one message from client `i`; false once the writer is gone.
    @Sendable func send(_ i: Int) async {
        let c = load[i]
        let cid = "\(run)-\(sentCount.withLockedValue { n in defer { n += 1 }; return n })"
        let now = ContinuousClock.now
        c.sentAt.withLockedValue { $0[cid] = now }
        stats.sendTimes.withLockedValue { $0[cid] = now }
        let frame: JSONValue = ["type": "send_msg", "conversation_id": .string(conversationOf[i] ?? ""), "content": "load", "client_msg_id": .string(cid)]
        if let w = c.writer.withLockedValue({ $0 }) {
            do { try await w.write(.text(frame.jsonString())) } catch { stats.counters.withLockedValue { $0.errors += 1 } }
        }
    }
    if rate > 0 {
        // Open loop: paces the offered rate across all clients, whatever the answers.
        let interval: Duration = .nanoseconds(1_000_000_000 / rate)
        var next = start
        var k = 0
        while ContinuousClock.now < end {
            await send(k % clients)
            k += 1
            next += interval
            if next > ContinuousClock.now { try await Task.sleep(until: next) }
        }
    } else {
        // Closed loop: every client keeps `window` messages in flight and sends the next one
        // when an ack (or error) frees a slot; the rate is what the system sustains.
        await withTaskGroup(of: Void.self) { g in
            g.addTask {
                // A lost ack must not keep a client waiting past the end of the run.
                try? await Task.sleep(until: end)
                for c in load { c.acked.finish() }
            }
            for i in load.indices {
                g.addTask {
                    for _ in 0..<window { await send(i) }
                    for await _ in load[i].acks {
                        if ContinuousClock.now >= end { break }
                        await send(i)
                    }
                }
            }
        }
    }
    let sent = sentCount.withLockedValue { $0 }
    let sendSecs = Double(micros(ContinuousClock.now - start)) / 1e6
    // Let in-flight messages land.
    let drainEnd = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < drainEnd, stats.counters.withLockedValue({ $0.accepted }) < sent {
        try await Task.sleep(for: .milliseconds(100))
    }
    try await Task.sleep(for: .milliseconds(500))
    let total = Double(micros(ContinuousClock.now - start)) / 1e6
    let ackSecs = max(sendSecs, Double(micros(stats.lastAck.withLockedValue { $0 } - start)) / 1e6)
    let deliverSecs = max(sendSecs, Double(micros(stats.lastDelivery.withLockedValue { $0 } - start)) / 1e6)
    let c = stats.counters.withLockedValue { $0 }
    let membersPer = Double(clients) / Double(conversations)
    print(String(format: "sent %d in %.1f s (%.0f msg/s offered); accepted %d (%.0f msg/s); delivered to the other members %d (%.0f msg/s); events on all devices incl. the sender's own %d (%.1f devices per conversation)",
                 sent, sendSecs, Double(sent) / sendSecs, c.accepted, Double(c.accepted) / ackSecs, c.toOthers, Double(c.toOthers) / deliverSecs,
                 c.delivered, membersPer))
    print("not acknowledged when the run ended (still queued, or lost): \(sent - c.accepted), errors: \(c.errors), out of order: \(c.outOfOrder), duplicates: \(c.duplicates)")
    report("send→ack", stats.ack.withLockedValue { $0 })
    report("send→deliver (other members)", stats.deliver.withLockedValue { $0 })
    if o.values["timeline"] != nil {
        for (second, h) in stats.bySecond.withLockedValue({ $0 }).sorted(by: { $0.key < $1.key }) {
            print(String(format: "  second %2d: n=%d p50=%.2fms p99=%.2fms max=%.2fms", second, h.totalCount,
                         Double(h.valueAtPercentile(50)) / 1000, Double(h.valueAtPercentile(99)) / 1000, Double(h.max) / 1000))
        }
    }
    for (pid, b) in zip(pids, before) {
        if let b, let a = processStats(pid) {
            print(String(format: "pid %@: cpu %.1f s (%.0f%% of one core), rss %.0f MB", pid, a.cpu - b.cpu, (a.cpu - b.cpu) / total * 100, a.rssMB))
        }
    }
    for t in tasks { t.cancel() }
}

let args = CommandLine.arguments
switch args.count > 1 ? args[1] : "" {
case "bus-rtt": try await busRTT(Options(args.dropFirst(2)))
case "ws-load": try await wsLoad(Options(args.dropFirst(2)))
default:
    print("usage: aiim-bench bus-rtt --requests N [--concurrency C] | ws-load --gateway HOST:PORT --clients N --conversations M --rate R --seconds S [--pids 'P1 P2']")
    exit(64)
}
