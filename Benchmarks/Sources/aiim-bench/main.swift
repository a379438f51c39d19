import AIIMConfiguration
import AIIMProtocol
import AIIMRedis
import Foundation
import Histogram
import Logging
import NIOConcurrencyHelpers

// aiim-bench: measures a running AIIM (see Benchmarks/README.md).
//   aiim-bench bus-rtt   --requests 10000 [--concurrency 1]            (REDIS_URL)
//   aiim-bench ws-load   --gateway 127.0.0.1:PORT --clients 20 --conversations 10
//                        [--rate 1000 | --rate 0 --window 4 (as fast as possible)] --seconds 10 [--pids "1 2"]
//                        [--threads 1] [--timeline 1]                                    (JWT_SECRET)
//   aiim-bench abuse     --gateway 127.0.0.1:PORT --scenario flood|slow-readers|stream-budget
//                        [--seconds 10] [--pids "GW"]                        (JWT_SECRET; REDIS_URL)
//   aiim-bench gen-load  --gateway 127.0.0.1:PORT --answers 200 --tokens 500 --watchers 3 --rate 20000
//                        [--pids "1 2"] [--pg-pid P] [--threads 1]           (JWT_SECRET; DATABASE_URL)

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
    let redis = try RedisClient(url: try Environment().require("REDIS_URL"), poolSize: 8, tls: RedisTLSFiles(Environment()), logger: logger)
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

let args = CommandLine.arguments
switch args.count > 1 ? args[1] : "" {
case "bus-rtt": try await busRTT(Options(args.dropFirst(2)))
case "ws-load": try await wsLoad(Options(args.dropFirst(2)))
case "abuse": try await abuse(Options(args.dropFirst(2)))
case "gen-load": try await genLoad(Options(args.dropFirst(2)))
default:
    print("usage: aiim-bench bus-rtt --requests N [--concurrency C] | ws-load --gateway HOST:PORT --clients N --conversations M --rate R --seconds S [--pids 'P1 P2'] | abuse --gateway HOST:PORT --scenario flood|slow-readers|stream-budget | gen-load --gateway HOST:PORT --answers N --tokens M --watchers W --rate R [--pids 'P1 P2']")
    exit(64)
}
