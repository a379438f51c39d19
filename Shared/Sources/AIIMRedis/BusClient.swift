import AIIMJSON
import AIIMProtocol
import Logging
import Metrics
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Request/reply over Redis streams: a command goes to the handling service's command stream
/// with `replyTo` = this instance's reply stream, a correlation id (the envelope id) and a
/// deadline; the reply comes back on the reply stream and resumes the waiting caller.
///
/// Deadlines are enforced by one sweeper in `run()` rather than a timer task per request: at
/// thousands of requests a second, a sleeping task per request cost more than the request.
public final class BusClient: Service, Sendable {
    let redis: RedisClient
    public let instance: String
    public let replyStream: String
    let maxLength: Int
    let logger: Logger
    let pending = NIOLockedValueBox<[String: Slot]>([:])
    /// How often expired requests are failed with `timeout`.
    let sweepInterval: Duration
    /// Whether `run()` (and so the sweeper) is active; without it a request keeps its own timer.
    let sweeping = NIOLockedValueBox(false)

    /// A request between its XADD and its reply.
    struct Slot {
        var deadline: ContinuousClock.Instant
        var service: ServiceName
        /// Set once the caller parks; nil while its XADD is still in flight.
        var continuation: CheckedContinuation<Envelope, any Error>?
        /// A reply that came back before the caller parked (a fast service).
        var early: Envelope?
    }

    public init(redis: RedisClient, instance: String, maxLength: Int = 100_000,
                sweepInterval: Duration = .milliseconds(50), logger: Logger) {
        self.redis = redis
        self.instance = instance
        self.replyStream = StreamNames.replies(instance: instance)
        self.maxLength = maxLength
        self.sweepInterval = sweepInterval
        self.logger = logger
    }

    /// Sends `command` and waits for its reply. Throws the service's `AIIMError`, or `timeout`.
    public func request<C: BusCommand>(_ command: C, timeout: Duration = .seconds(5)) async throws -> C.Response {
        let deadline = Timestamp.nowMillis() + timeout.wholeMilliseconds
        let env = try Envelope.make(type: C.type, payload: command, replyTo: replyStream, deadline: deadline,
                                    origin: instance)
        let id = env.header.id
        let start = ContinuousClock.now
        // The slot exists before the command does, so a reply can never arrive unclaimed.
        pending.withLockedValue { $0[id] = Slot(deadline: start + timeout, service: C.service) }
        do {
            try await redis.xadd(StreamNames.commands(C.service), maxLen: maxLength, envelope: env)
        } catch {
            pending.withLockedValue { _ = $0.removeValue(forKey: id) }
            logger.warning("bus send failed", metadata: ["type": "\(C.type)", "error": "\(error)"])
            if let re = error as? RedisError, re.isOutOfMemory {
                // Redis is at maxmemory: refused at once; it heals as streams are trimmed.
                throw AIIMError.unavailable("the message bus is out of memory; try again shortly")
            }
            throw AIIMError.unavailable("\(C.service.rawValue) is unavailable")
        }
        if !sweeping.withLockedValue({ $0 }) {
            // Unstructured: nobody sweeps (run() is not active), so this request times itself out.
            Task { [self] in
                try? await Task.sleep(for: timeout)
                fail(id, with: AIIMError(.timeout, "\(C.service.rawValue) did not answer in time"))
            }
        }
        let reply: Envelope = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { cont in
                let early: Envelope?? = pending.withLockedValue { all in
                    guard var slot = all[id] else { return .some(nil) }  // already failed (timeout/cancel)
                    if let e = slot.early { all[id] = nil; return e }
                    slot.continuation = cont
                    all[id] = slot
                    return nil
                }
                switch early {
                case .some(.some(let env)): cont.resume(returning: env)
                case .some(.none): cont.resume(throwing: AIIMError(.timeout, "\(C.service.rawValue) did not answer in time"))
                case .none: break
                }
            }
        } onCancel: {
            fail(id, with: CancellationError())
        }
        Timer(label: "aiim_bus_request_duration_seconds", dimensions: [("type", C.type)]).recordNanoseconds(start.elapsedNanoseconds)
        if let e = reply.header.error { throw e }
        return try reply.decode(C.Response.self)
    }

    /// Posts a command without waiting for a reply.
    public func send<C: BusCommand>(_ command: C) async throws {
        let env = try Envelope.make(type: C.type, payload: command, origin: instance)
        try await redis.xadd(StreamNames.commands(C.service), maxLen: maxLength, envelope: env)
    }

    /// Answers a request from the delivery event that carried its reply (`DeliveryEvent.reply`);
    /// ignored when the event answers another instance's request.
    public func resolve(_ reply: EventReply, payload: [UInt8]) {
        guard reply.stream == replyStream else { return }
        let header = EnvelopeHeader(
            type: "reply", id: reply.correlationId, version: EnvelopeHeader.currentVersion, timestamp: Timestamp.nowMillis(),
            attempt: 1, replyTo: nil, correlationId: reply.correlationId, deadline: nil, traceparent: "", error: nil, origin: nil)
        deliver(reply.correlationId, Envelope(header: header, payload: payload))
    }

    /// Hands a reply to its caller (or keeps it until the caller parks).
    func deliver(_ id: String, _ env: Envelope) {
        let cont: CheckedContinuation<Envelope, any Error>? = pending.withLockedValue { all in
            guard var slot = all[id] else { return nil }  // late: the caller gave up
            if let c = slot.continuation { all[id] = nil; return c }
            slot.early = env
            all[id] = slot
            return nil
        }
        cont?.resume(returning: env)
    }

    func fail(_ id: String, with error: any Error) {
        let cont = pending.withLockedValue { $0.removeValue(forKey: id)?.continuation }
        cont?.resume(throwing: error)
    }

    /// Fails every request whose deadline has passed.
    func sweep(now: ContinuousClock.Instant = .now) {
        let expired: [(CheckedContinuation<Envelope, any Error>?, ServiceName)] = pending.withLockedValue { all in
            var out: [(CheckedContinuation<Envelope, any Error>?, ServiceName)] = []
            for (id, slot) in all where slot.deadline <= now && slot.early == nil {
                out.append((slot.continuation, slot.service))
                // A slot still in XADD is removed too: its caller then finds nothing and times out.
                all[id] = nil
            }
            return out
        }
        for (cont, service) in expired {
            cont?.resume(throwing: AIIMError(.timeout, "\(service.rawValue) did not answer in time"))
        }
    }

    /// Reads this instance's reply stream and resumes waiting callers; fails expired requests.
    public func run() async throws {
        let tail = StreamTail(redis: redis, stream: replyStream, logger: logger) { [self] entries in
            for entry in entries {
                guard let env = try? Envelope(fields: entry.fields), let cid = env.header.correlationId else {
                    logger.error("malformed reply entry", metadata: ["entry": "\(entry.id)"])
                    continue
                }
                deliver(cid, env)
            }
        }
        sweeping.withLockedValue { $0 = true }
        defer { sweeping.withLockedValue { $0 = false } }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { [self] in
                while !Task.isShuttingDownGracefully && !Task.isCancelled {
                    try? await Task.sleep(for: sweepInterval)
                    sweep()
                }
            }
            try await tail.run()
            group.cancelAll()
        }
        sweep(now: .now + .seconds(86_400))  // nobody will answer the ones still waiting
        // Nobody reads this stream any more.
        _ = try? await redis.command(["DEL", replyStream])
    }
}
