import AIIMJSON
import AIIMProtocol
import Logging
import Metrics
import NIOConcurrencyHelpers
import ServiceLifecycle

/// How a service consumes its command stream.
public struct ConsumerSettings: Sendable {
    public var stream: String
    public var group: String
    /// Unique per process (the instance id).
    public var consumer: String
    /// Commands handled at once by this process.
    public var concurrency: Int
    /// Deliveries before an entry goes to the dead-letter stream.
    public var maxAttempts: Int
    /// Pending entries idle this long are reclaimed from their (dead) consumer.
    public var reclaimIdle: Duration
    /// `BLOCK` of each read; also how quickly the loop notices a shutdown.
    public var block: Duration
    /// `MAXLEN ~` for replies and dead letters this consumer writes.
    public var maxLength: Int

    public init(stream: String, group: String, consumer: String, concurrency: Int = 64, maxAttempts: Int = 5,
                reclaimIdle: Duration = .seconds(15), block: Duration = .milliseconds(1000), maxLength: Int = 100_000) {
        self.stream = stream; self.group = group; self.consumer = consumer; self.concurrency = concurrency
        self.maxAttempts = maxAttempts; self.reclaimIdle = reclaimIdle; self.block = block; self.maxLength = maxLength
    }
}

/// Handles one command; returns the JSON reply payload (nil: reply `{}`; empty: the request was
/// answered another way, by the delivery event it caused, so no reply entry is written).
/// Throwing an `AIIMError` answers the requester with that error (the entry is done); a
/// `.unavailable`/`.timeout` AIIMError or any other error is transient: the entry stays pending
/// and is retried, then dead-lettered after `maxAttempts`.
public typealias CommandHandler = @Sendable (Envelope) async throws -> [UInt8]?

/// Consumes a command stream through a consumer group with bounded concurrency, acknowledges
/// after the handler's work is durable, reclaims entries of dead consumers (`XAUTOCLAIM`),
/// dead-letters poison entries, and drains in-flight work on graceful shutdown.
public final class StreamConsumer: Service, Sendable {
    let redis: RedisClient
    let settings: ConsumerSettings
    let handler: CommandHandler
    let logger: Logger
    let origin: String

    public init(redis: RedisClient, settings: ConsumerSettings, origin: String,
                logger: Logger, handler: @escaping CommandHandler) {
        self.redis = redis; self.settings = settings; self.handler = handler
        self.logger = logger; self.origin = origin
    }

    public func run() async throws {
        let reader = redis.makeBlockingReader(block: settings.block)
        var backoff = Backoff()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await ensureGroup()
                break
            } catch {
                logger.warning("cannot create consumer group yet", metadata: ["stream": "\(settings.stream)", "error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            }
        }
        let inFlight = NIOLockedValueBox(0)
        // Claims of running handlers are renewed while they run and while the loop drains;
        // leaving `run` cancels the renewal.
        async let _ = keepClaims()
        await withDiscardingTaskGroup { group in
            var lastReclaim = ContinuousClock.now
            var backoff = Backoff()
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                var free = settings.concurrency - inFlight.withLockedValue { $0 }
                while free <= 0 {
                    try? await Task.sleep(for: .milliseconds(2))
                    free = settings.concurrency - inFlight.withLockedValue { $0 }
                }
                do {
                    var entries: [(StreamEntry, Int)] = []
                    if ContinuousClock.now - lastReclaim > settings.reclaimIdle / 2 {
                        lastReclaim = .now
                        entries = try await reclaim(limit: free)
                    }
                    if entries.isEmpty {
                        let cmd: RedisCommand = [
                            "XREADGROUP", "GROUP", settings.group, settings.consumer,
                            "COUNT", String(free),
                            "BLOCK", String(reader.blockMillis), "STREAMS", settings.stream, ">",
                        ]
                        entries = StreamEntry.parseRead(try await reader.command(cmd)).map { ($0, 1) }
                    }
                    backoff.reset()
                    for (entry, deliveries) in entries {
                        inFlight.withLockedValue { $0 += 1 }
                        group.addTask {
                            await self.process(entry, deliveries: deliveries)
                            inFlight.withLockedValue { $0 -= 1 }
                        }
                    }
                } catch {
                    if let re = error as? RedisError, re.description.hasPrefix("NOGROUP") {
                        try? await ensureGroup()
                    }
                    logger.warning("stream read failed; retrying", metadata: ["stream": "\(settings.stream)", "error": "\(error)"])
                    try? await Task.sleep(for: backoff.next())
                }
            }
            logger.info("draining in-flight commands", metadata: ["count": "\(inFlight.withLockedValue { $0 })"])
        }
        await reader.shutdown()
        logger.info("consumer stopped", metadata: ["stream": "\(settings.stream)"])
    }

    /// Ids of the entries whose handlers run now in this process.
    let running = NIOLockedValueBox<Set<String>>([])

    /// How often the claims of running handlers are renewed: well inside `reclaimIdle`, so no
    /// replica ever sees a running command as idle and runs it a second time.
    var claimRenewal: Duration { settings.reclaimIdle / 3 }

    /// Renews the claim of every running handler's entry (`XCLAIM … 0 … JUSTID`: resets its
    /// idle time, keeps this consumer as owner, does not count a delivery), one command for all
    /// of them, until cancelled.
    func keepClaims() async {
        while true {
            do { try await Task.sleep(for: claimRenewal) } catch { return }
            let ids = running.withLockedValue { Array($0) }
            if ids.isEmpty { continue }
            var cmd: RedisCommand = ["XCLAIM", settings.stream, settings.group, settings.consumer, "0"]
            for id in ids { cmd.append(id) }
            cmd.append("JUSTID")
            do { _ = try await redis.command(cmd) } catch {
                logger.warning("cannot renew claims", metadata: ["stream": "\(settings.stream)", "error": "\(error)"])
            }
        }
    }

    func ensureGroup() async throws {
        do {
            try await redis.command(["XGROUP", "CREATE", settings.stream, settings.group, "0", "MKSTREAM"])
        } catch let e as RedisError where e.description.hasPrefix("BUSYGROUP") {
            return
        }
    }

    /// Claims entries idle past `reclaimIdle` from any consumer, with their delivery counts.
    func reclaim(limit: Int) async throws -> [(StreamEntry, Int)] {
        let idleMs = settings.reclaimIdle.wholeMilliseconds
        let r = try await redis.command([
            "XAUTOCLAIM", settings.stream, settings.group, settings.consumer, String(idleMs), "0-0",
            "COUNT", String(max(1, limit)),
        ])
        guard let parts = r.array, parts.count >= 2 else { return [] }
        let entries = StreamEntry.parseList(parts[1])
        if entries.isEmpty { return [] }
        let counts = try await redis.pipeline(entries.map {
            ["XPENDING", settings.stream, settings.group, $0.id, $0.id, "1"]
        })
        var out: [(StreamEntry, Int)] = []
        for (entry, c) in zip(entries, counts) {
            let deliveries = c.array?.first?.array?[3].int.map(Int.init) ?? settings.maxAttempts + 1
            out.append((entry, deliveries))
        }
        logger.notice("reclaimed entries of a dead consumer", metadata: ["count": "\(out.count)", "stream": "\(settings.stream)"])
        Counter(label: "aiim_stream_reclaimed_total", dimensions: [("stream", settings.stream)]).increment(by: out.count)
        return out
    }

    func process(_ entry: StreamEntry, deliveries: Int) async {
        let envelope: Envelope
        do {
            envelope = try Envelope(fields: entry.fields)
        } catch {
            logger.error("poison entry: cannot decode", metadata: ["entry": "\(entry.id)", "error": "\(error)"])
            await finish(entry, envelope: nil, reply: .failure(error as? AIIMError ?? .internalError), deadLetter: "\(error)")
            return
        }
        var env = envelope
        env.header.attempt = max(env.header.attempt, deliveries)
        running.withLockedValue { _ = $0.insert(entry.id) }
        defer { running.withLockedValue { _ = $0.remove(entry.id) } }
        await Trace.$current.withValue(envelope.trace) {
            if deliveries > settings.maxAttempts {
                logger.error("entry failed too often; dead-lettering", metadata: ["entry": "\(entry.id)", "type": "\(env.header.type)", "attempts": "\(deliveries)"])
                await finish(entry, envelope: env, reply: .failure(.internalError), deadLetter: "max attempts exceeded")
                return
            }
            let start = ContinuousClock.now
            var backoff = Backoff(base: .milliseconds(50), cap: .milliseconds(400))
            for attempt in 1...3 {
                // Past its deadline the requester has given up (it answered its client with
                // `timeout`): doing the work now would store what the client was told failed.
                if let deadline = env.header.deadline, deadline < Timestamp.nowMillis() {
                    logger.notice("command expired before it ran", metadata: [
                        "entry": "\(entry.id)", "type": "\(env.header.type)", "late_ms": "\(Timestamp.nowMillis() - deadline)",
                    ])
                    Counter(label: "aiim_command_expired_total", dimensions: [("type", env.header.type)]).increment()
                    await finish(entry, envelope: env, reply: .failure(Self.expired), deadLetter: nil)
                    return
                }
                do {
                    let reply = try await handler(env)
                    let nanos = start.elapsedNanoseconds
                    Timer(label: "aiim_command_duration_seconds", dimensions: [("type", env.header.type)])
                        .recordNanoseconds(nanos)
                    // One line per command, under the request's trace id: `deploy/trace` follows it here.
                    logger.info("command handled", metadata: [
                        "command": "\(env.header.type)", "attempt": "\(env.header.attempt)", "duration_us": "\(nanos / 1000)",
                    ])
                    await finish(entry, envelope: env, reply: .success(reply ?? Array("{}".utf8)), deadLetter: nil)
                    return
                } catch let e as AIIMError where e.code != .unavailable && e.code != .timeout {
                    let poison = e.code == .unknownType || e.code == .unsupportedVersion
                    if poison { logger.error("poison entry", metadata: ["entry": "\(entry.id)", "error": "\(e)"]) }
                    // Its one line too (the entry is deleted once acknowledged; the log stays).
                    logger.info("command handled", metadata: [
                        "command": "\(env.header.type)", "attempt": "\(env.header.attempt)", "error": "\(e.code.rawValue)",
                    ])
                    await finish(entry, envelope: env, reply: .failure(e), deadLetter: poison ? e.message : nil)
                    return
                } catch {
                    logger.warning("transient failure", metadata: ["entry": "\(entry.id)", "type": "\(env.header.type)", "try": "\(attempt)", "error": "\(error)"])
                    if attempt < 3 { try? await Task.sleep(for: backoff.next()) }
                }
            }
            // Left pending: another pass (or another replica) retries it after `reclaimIdle`.
            Counter(label: "aiim_command_transient_failures_total", dimensions: [("type", env.header.type)]).increment()
        }
    }

    /// The answer of a command whose deadline passed before it ran (nobody reads it: `finish`
    /// writes no reply past the deadline).
    static let expired = AIIMError(.timeout, "the request expired before it ran")

    /// Replies (if someone waits), dead-letters if asked, and acknowledges, in one round trip.
    func finish(_ entry: StreamEntry, envelope: Envelope?, reply: Result<[UInt8], AIIMError>, deadLetter reason: String?) async {
        var cmds: [RedisCommand] = []
        let answeredByEvent = if case .success(let p) = reply { p.isEmpty } else { false }
        if !answeredByEvent, let env = envelope, let replyTo = env.header.replyTo,
           env.header.deadline.map({ $0 >= Timestamp.nowMillis() }) ?? true {
            var header = EnvelopeHeader(
                type: "reply", id: UUIDs.make(), version: EnvelopeHeader.currentVersion,
                timestamp: Timestamp.nowMillis(), attempt: 1, replyTo: nil, correlationId: env.header.id,
                deadline: nil, traceparent: (Trace.current ?? env.trace).traceparent, error: nil, origin: origin)
            var payload: [UInt8] = []
            switch reply {
            case .success(let p): payload = p
            case .failure(let e): header.error = e
            }
            cmds.append(RedisClient.xaddCommand(replyTo, maxLen: 10_000, envelope: Envelope(header: header, payload: payload)))
        }
        if let reason {
            var c: RedisCommand = ["XADD", StreamNames.deadLetter, "MAXLEN", "~", String(settings.maxLength), "*",
                                   "stream", settings.stream, "entry", entry.id, "group", settings.group, "reason", reason]
            for (k, v) in entry.fields.sorted(by: { $0.key < $1.key }) { c.append(k); c.append(bytes: v) }
            cmds.append(c)
            Counter(label: "aiim_stream_dead_lettered_total", dimensions: [("stream", settings.stream)]).increment()
        }
        cmds.append(["XACK", settings.stream, settings.group, entry.id])
        // Done: the entry need not stay, so a command stream holds only pending work whatever
        // the commands' sizes (its copy in the dead-letter stream, if any, is written above).
        cmds.append(["XDEL", settings.stream, entry.id])
        var backoff = Backoff(base: .milliseconds(50), cap: .seconds(1))
        for _ in 0..<5 {
            do {
                _ = try await redis.pipeline(cmds)
                return
            } catch {
                logger.warning("cannot acknowledge; retrying", metadata: ["entry": "\(entry.id)", "error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            }
        }
        // Not acknowledged: it will be reclaimed and handled again; handlers are idempotent.
    }
}
