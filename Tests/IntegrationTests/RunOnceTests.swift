import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Foundation
import NIOConcurrencyHelpers
import ServiceLifecycle
import Testing

/// Work runs once, in time (issue 17): a running handler is never reclaimed by another replica,
/// and a command whose requester gave up is not executed.
@Suite(.serialized) struct RunOnceTests {
    init() { TestLog.bootstrap() }


    /// Reclaim after 1 s (renewed every third of it): short enough for a quick test, long enough
    /// that a loaded CI machine does not starve the renewal past it.
    func consumer(_ redis: RedisClient, stream: String, name: String,
                  handler: @escaping CommandHandler) -> StreamConsumer {
        StreamConsumer(
            redis: redis,
            settings: ConsumerSettings(stream: stream, group: "g", consumer: name, concurrency: 8,
                                       reclaimIdle: .milliseconds(1000), block: .milliseconds(100)),
            origin: "test", logger: TestLog.logger, handler: handler)
    }

    /// A handler that takes three times `RECLAIM_IDLE_MS` used to be reclaimed by the other
    /// replica (and by its own consumer) while it ran, and ran again.
    @Test func aHandlerStillRunningIsNeverReclaimed() async throws {
        let redis = try RedisClient(url: try TestEnv.redisURL(), poolSize: 4, logger: TestLog.logger)
        let stream = uniqueName("aiim:test:runonce")
        try await redis.command(["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"])
        let runs = NIOLockedValueBox(0)
        let slow: CommandHandler = { _ in
            runs.withLockedValue { $0 += 1 }
            try await Task.sleep(for: .milliseconds(3000))
            return nil
        }
        let a = consumer(redis, stream: stream, name: "a", handler: slow)
        let b = consumer(redis, stream: stream, name: "b", handler: slow)
        try await withServices([a, b]) {
            try await redis.xadd(stream, maxLen: 100, envelope: try Envelope.make(type: "work", payload: Empty()))
            let done = try await eventually(timeout: .seconds(10)) {
                try await redis.command(["XPENDING", stream, "g"]).array?.first?.int == 0 && runs.withLockedValue { $0 } >= 1
            }
            #expect(done, "the command was handled and acknowledged")
            // Further reclaim passes find nothing to run again.
            try await Task.sleep(for: .milliseconds(1500))
        }
        #expect(runs.withLockedValue { $0 } == 1)
        try await redis.command(["DEL", stream])
        await redis.shutdown()
    }

    /// A command whose deadline passed while it waited (a backlog, a dead replica) is
    /// acknowledged without running: the requester already answered its client `timeout`.
    @Test func aCommandPastItsDeadlineIsNotExecuted() async throws {
        let redis = try RedisClient(url: try TestEnv.redisURL(), poolSize: 4, logger: TestLog.logger)
        let stream = uniqueName("aiim:test:deadline")
        try await redis.command(["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"])
        let handled = NIOLockedValueBox<[String]>([])
        let c = consumer(redis, stream: stream, name: "c") { env in
            let n = try env.decode([String: String].self)["n"] ?? ""
            handled.withLockedValue { $0.append(n) }
            return nil
        }
        let replies = uniqueName("aiim:test:deadline-replies")
        try await redis.xadd(stream, maxLen: 100, envelope: try Envelope.make(
            type: "work", payload: ["n": "late"], replyTo: replies, deadline: Timestamp.nowMillis() - 1000))
        try await redis.xadd(stream, maxLen: 100, envelope: try Envelope.make(
            type: "work", payload: ["n": "in-time"], replyTo: replies, deadline: Timestamp.nowMillis() + 60_000))
        try await redis.xadd(stream, maxLen: 100, envelope: try Envelope.make(type: "work", payload: ["n": "no-deadline"]))
        try await withServices([c]) {
            let done = try await eventually(timeout: .seconds(10)) {
                try await redis.command(["XPENDING", stream, "g"]).array?.first?.int == 0 && handled.withLockedValue { $0.count } >= 2
            }
            #expect(done)
        }
        #expect(handled.withLockedValue { $0 }.sorted() == ["in-time", "no-deadline"])
        // Only the request still waited for got a reply.
        #expect(try await redis.command(["XLEN", replies]).int == 1)
        try await redis.command(["DEL", stream, replies])
        await redis.shutdown()
    }
}
