import AIIMShared
import Logging
import Metrics
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Request/reply over Redis streams: a command goes to the handling service's command stream
/// with `replyTo` = this instance's reply stream, a correlation id (the envelope id) and a
/// deadline; the reply comes back on the reply stream and resumes the waiting caller.
public final class BusClient: Service, Sendable {
    let redis: RedisClient
    public let instance: String
    public let replyStream: String
    let maxLength: Int
    let logger: Logger
    let pending = NIOLockedValueBox<[String: CheckedContinuation<Envelope, any Error>]>([:])

    public init(redis: RedisClient, instance: String, maxLength: Int = 100_000, logger: Logger) {
        self.redis = redis
        self.instance = instance
        self.replyStream = StreamNames.replies(instance: instance)
        self.maxLength = maxLength
        self.logger = logger
    }

    /// Sends `command` and waits for its reply. Throws the service's `AIIMError`, or `timeout`.
    public func request<C: BusCommand>(_ command: C, timeout: Duration = .seconds(5)) async throws -> C.Response {
        let deadline = Timestamp.nowMillis() + Int64(timeout.components.seconds * 1000)
            + Int64(timeout.components.attoseconds / 1_000_000_000_000_000)
        let env = try Envelope.make(type: C.type, payload: command, replyTo: replyStream, deadline: deadline,
                                    origin: instance)
        let id = env.header.id
        let start = ContinuousClock.now
        let reply: Envelope = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { cont in
                pending.withLockedValue { $0[id] = cont }
                // Unstructured: the send and the timer must outlive this closure, which only parks
                // the caller; whichever of reply/error/timeout comes first resumes it once.
                Task { [self] in
                    do {
                        try await redis.xadd(StreamNames.commands(C.service), maxLen: maxLength, envelope: env)
                    } catch {
                        logger.warning("bus send failed", metadata: ["type": "\(C.type)", "error": "\(error)"])
                        resume(id, with: .failure(AIIMError.unavailable("\(C.service.rawValue) is unavailable")))
                        return
                    }
                    try? await Task.sleep(for: timeout)
                    resume(id, with: .failure(AIIMError(.timeout, "\(C.service.rawValue) did not answer in time")))
                }
            }
        } onCancel: {
            resume(id, with: .failure(CancellationError()))
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

    func resume(_ id: String, with result: Result<Envelope, any Error>) {
        guard let cont = pending.withLockedValue({ $0.removeValue(forKey: id) }) else { return }
        cont.resume(with: result)
    }

    /// Reads this instance's reply stream and resumes waiting callers.
    public func run() async throws {
        let tail = StreamTail(redis: redis, stream: replyStream, logger: logger) { [self] entries in
            for entry in entries {
                guard let env = try? Envelope(fields: entry.fields), let cid = env.header.correlationId else {
                    logger.error("malformed reply entry", metadata: ["entry": "\(entry.id)"])
                    continue
                }
                resume(cid, with: .success(env))
            }
        }
        try await tail.run()
        // Nobody reads this stream any more.
        _ = try? await redis.command(["DEL", replyStream])
    }
}
