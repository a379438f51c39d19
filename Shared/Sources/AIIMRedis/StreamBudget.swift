import AIIMJSON
import Logging
import Metrics
import ServiceLifecycle

/// Redis memory as `INFO memory` reports it, against the budget AIIM keeps it under.
public struct RedisMemoryState: Sendable, Equatable {
    /// `used_memory`.
    public var usedBytes: Int
    /// `maxmemory`; 0 when Redis has no limit.
    public var maxBytes: Int
    /// Past this, the shared streams are trimmed (`StreamBudget`); 0: never.
    public var budgetBytes: Int

    /// `full` at or past `maxmemory` (Redis refuses writes with `OOM`), `high` past the budget
    /// (streams are being trimmed), else `ok`.
    public var state: String {
        if maxBytes > 0 && usedBytes >= maxBytes { return "full" }
        if budgetBytes > 0 && usedBytes >= budgetBytes { return "high" }
        return "ok"
    }

    /// What `/ready` and `/health` show.
    public var json: JSONValue {
        .object(["state": .string(state), "used_bytes": .number(Double(usedBytes)), "max_bytes": .number(Double(maxBytes)),
                 "budget_bytes": .number(Double(budgetBytes))])
    }

    /// Reads `used_memory` and `maxmemory` from `INFO memory` text.
    static func parse(info: String, budget configured: Int) -> RedisMemoryState? {
        var used: Int?, max = 0
        for line in info.split(whereSeparator: \.isNewline) {  // "\r\n" is one Character
            if line.hasPrefix("used_memory:") { used = Int(line.dropFirst("used_memory:".count)) }
            if line.hasPrefix("maxmemory:") { max = Int(line.dropFirst("maxmemory:".count)) ?? 0 }
        }
        guard let used else { return nil }
        return RedisMemoryState(usedBytes: used, maxBytes: max, budgetBytes: configured > 0 ? configured : max / 10 * 8)
    }
}

extension RedisError {
    /// Redis refused a write because it is at `maxmemory` (`OOM command not allowed …`).
    public var isOutOfMemory: Bool { kind == .server && description.hasPrefix("OOM") }
}

/// Keeps Redis under its memory budget whatever the message sizes. Stream caps count entries
/// (`STREAM_MAXLEN`), and an entry may hold up to a whole message, so a count alone does not
/// bound bytes: every `interval` this reads `INFO memory` and, while `used_memory` is past the
/// budget (`REDIS_MEMORY_BUDGET`, default 80 % of `maxmemory`), halves the given streams
/// (`XTRIM MAXLEN ~`, down to `floor` entries each). `XTRIM` is allowed when Redis refuses
/// writes, so a full Redis recovers by itself. Trimmed events are not lost to devices: a device
/// that misses one fills the gap from history. Command entries are deleted once acknowledged
/// (`StreamConsumer`), so command streams hold only pending work.
public struct StreamBudget: Service {
    let redis: RedisClient
    let streams: [String]
    let budgetBytes: Int
    let interval: Duration
    let floor: Int
    let logger: Logger
    let report: @Sendable (RedisMemoryState) -> Void

    public init(redis: RedisClient, streams: [String], budgetBytes: Int, interval: Duration, floor: Int = 100,
                logger: Logger, report: @escaping @Sendable (RedisMemoryState) -> Void) {
        self.redis = redis; self.streams = streams; self.budgetBytes = budgetBytes; self.interval = interval
        self.floor = floor; self.logger = logger; self.report = report
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            _ = try? await check()
            try? await Task.sleep(for: interval)
        }
    }

    /// One pass: reads the memory state, reports it, trims if past the budget.
    @discardableResult
    public func check() async throws -> RedisMemoryState? {
        guard let info = try await redis.command(["INFO", "memory"]).text,
              let state = RedisMemoryState.parse(info: info, budget: budgetBytes) else { return nil }
        report(state)
        Gauge(label: "aiim_redis_used_memory_bytes").record(state.usedBytes)
        guard state.budgetBytes > 0, state.usedBytes >= state.budgetBytes, !streams.isEmpty else { return state }
        let lengths = try await redis.pipeline(streams.map { ["XLEN", $0] })
        var trims: [RedisCommand] = []
        for (stream, length) in zip(streams, lengths) {
            guard let n = length.int.map(Int.init), n > floor else { continue }
            trims.append(["XTRIM", stream, "MAXLEN", "~", String(Swift.max(floor, n / 2))])
        }
        if trims.isEmpty { return state }
        _ = try await redis.pipeline(trims)
        logger.notice("redis past its memory budget; trimmed streams", metadata: [
            "used_bytes": "\(state.usedBytes)", "budget_bytes": "\(state.budgetBytes)", "streams": "\(trims.count)",
        ])
        Counter(label: "aiim_stream_budget_trims_total").increment(by: trims.count)
        return state
    }
}
