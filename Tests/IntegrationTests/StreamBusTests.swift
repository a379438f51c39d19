import AIIMBackendKit
import AIIMProtocol
import AIIMRedis
import AIIMServiceKit
import Foundation
import GatewayCore
import Logging
import MessagingCore
import NIOConcurrencyHelpers
import Prometheus
import ServiceLifecycle
import Testing

/// The Redis streams bus against a real Redis: round trip, reclaim, dead letters, drain.
@Suite(.serialized) struct StreamBusTests {
    init() { TestLog.bootstrap() }

    func makeRedis() throws -> RedisClient {
        try RedisClient(url: try TestEnv.redisURL(), poolSize: 4, logger: TestLog.logger)
    }


    @Test func roundTripGatewayMessagingGatewayCarriesOneTrace() async throws {
        let messaging = try buildMessaging(env: try TestEnv.serviceEnvironment(["INSTANCE_ID": uniqueName("messaging")]),
                                           registry: PrometheusCollectorRegistry())
        let redis = try makeRedis()
        let bus = BusClient(redis: redis, instance: uniqueName("gw"), logger: Logger(label: "aiim.gateway"))
        let trace = Trace.root()
        let pong = try await withServices(try messaging.services() + [bus]) {
            try await Trace.$current.withValue(trace) {
                try await bus.request(PingCommand(note: "round-trip"), timeout: .seconds(10))
            }
        }
        #expect(pong.service == "messaging")
        #expect(pong.note == "round-trip")
        let lines = TestLog.lines(withTrace: trace.traceID)
        #expect(lines.contains { $0.label == "aiim.messaging" && $0.message == "ping" })
        await redis.shutdown()
        await messaging.runtime.shutdown()
    }

    @Test func aConnectionRedisDropsFailsItsCallsOrReconnectsButNeverHangs() async throws {
        let redis = try RedisClient(url: try TestEnv.redisURL(), poolSize: 1, logger: TestLog.logger)
        let admin = try makeRedis()
        let id = try #require(try await redis.command(["CLIENT", "ID"]).int)
        try await admin.command(["CLIENT", "KILL", "ID", String(id)])
        let start = ContinuousClock.now
        var answered = 0
        for _ in 0..<20 {
            if (try? await redis.command(["PING"]))?.text == "PONG" { answered += 1 }
        }
        #expect(ContinuousClock.now - start < .seconds(5), "calls on a dropped connection must fail fast")
        #expect(answered >= 19, "at most the call in flight when Redis dropped the connection fails")
        #expect(try await redis.command(["CLIENT", "ID"]).int != id, "a new connection replaced the dropped one")
        await redis.shutdown()
        await admin.shutdown()
    }

    @Test func requestToNobodyTimesOut() async throws {
        let redis = try makeRedis()
        let bus = BusClient(redis: redis, instance: uniqueName("gw"), logger: TestLog.logger)
        // Nothing consumes the gateway's command stream: the entry is never answered.
        struct Nobody: BusCommand {
            typealias Response = Empty
            static let type = "nobody.here"
            static let service = ServiceName.gateway
        }
        let start = ContinuousClock.now
        try await withServices([bus]) {
            do {
                _ = try await bus.request(Nobody(), timeout: .milliseconds(300))
                Issue.record("expected a timeout")
            } catch let e as AIIMError {
                #expect(e.code == .timeout)
            } catch { Issue.record("unexpected \(error)") }
        }
        #expect(ContinuousClock.now - start < .seconds(3))
        try await redis.command(["DEL", StreamNames.commands(.gateway)])
        await redis.shutdown()
    }

    @Test func entriesOfADeadConsumerAreReclaimedAndProcessedOnce() async throws {
        let redis = try makeRedis()
        let stream = uniqueName("aiim:test:reclaim")
        try await redis.command(["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"])
        var ids: [String] = []
        for i in 0..<20 {
            let env = try Envelope.make(type: "work", payload: ["n": i])
            ids.append(try await redis.xadd(stream, maxLen: 1000, envelope: env))
        }
        // Consumer "dead" reads everything and dies without acknowledging.
        let read = try await redis.command(["XREADGROUP", "GROUP", "g", "dead", "COUNT", "100", "STREAMS", stream, ">"])
        #expect(read.array?.first?.array?[1].array?.count == 20)

        let processed = NIOLockedValueBox<[String: Int]>([:])
        let consumer = StreamConsumer(
            redis: redis,
            settings: ConsumerSettings(stream: stream, group: "g", consumer: "alive", concurrency: 8,
                                       reclaimIdle: .milliseconds(300), block: .milliseconds(100)),
            origin: "test", logger: TestLog.logger
        ) { env in
            let n = try env.decode([String: Int].self)["n"]!
            processed.withLockedValue { $0["\(n)", default: 0] += 1 }
            return nil
        }
        try await withServices([consumer]) {
            let done = try await eventually(timeout: .seconds(10)) { processed.withLockedValue { $0.count } == 20 }
            #expect(done)
            // Let a further reclaim pass run: nothing may be processed twice.
            try await Task.sleep(for: .milliseconds(800))
        }
        #expect(processed.withLockedValue { $0.values.allSatisfy { $0 == 1 } })
        let pending = try await redis.command(["XPENDING", stream, "g"])
        #expect(pending.array?.first?.int == 0)
        try await redis.command(["DEL", stream])
        await redis.shutdown()
    }

    @Test func poisonEntriesGoToTheDeadLetterStream() async throws {
        let redis = try makeRedis()
        let stream = uniqueName("aiim:test:poison")
        let before = try await redis.command(["XLEN", StreamNames.deadLetter]).int ?? 0
        try await redis.command(["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"])
        try await redis.command(["XADD", stream, "*", "h", "{not json", "p", "{}"])
        try await redis.command(["XADD", stream, "*", "junk", "1"])
        try await redis.xadd(stream, maxLen: 100, envelope: try Envelope.make(type: "no.such.type", payload: Empty()))
        var future = try Envelope.make(type: "work", payload: Empty())
        future.header.version = 7
        try await redis.xadd(stream, maxLen: 100, envelope: future)
        try await redis.xadd(stream, maxLen: 100, envelope: try Envelope.make(type: "work", payload: Empty()))

        let handled = NIOLockedValueBox(0)
        let consumer = StreamConsumer(
            redis: redis,
            settings: ConsumerSettings(stream: stream, group: "g", consumer: "c", block: .milliseconds(100)),
            origin: "test", logger: TestLog.logger
        ) { env in
            guard env.header.type == "work" else { throw AIIMError(.unknownType, "unknown \(env.header.type)") }
            handled.withLockedValue { $0 += 1 }
            return nil
        }
        try await withServices([consumer]) {
            let ok = try await eventually {
                try await redis.command(["XPENDING", stream, "g"]).array?.first?.int == 0
                    && handled.withLockedValue { $0 } == 1
            }
            #expect(ok, "the consumer kept running and acknowledged everything")
        }
        let dlq = try await redis.command(["XRANGE", StreamNames.deadLetter, "-", "+"])
        let ours = (dlq.array ?? []).filter { entry in
            let fields = entry.array?[1].array ?? []
            return fields.contains(.string(Array(stream.utf8)))
        }
        #expect(ours.count == 4)
        #expect((try await redis.command(["XLEN", StreamNames.deadLetter]).int ?? 0) >= before + 4)
        try await redis.command(["DEL", stream])
        await redis.shutdown()
    }

    @Test func gracefulShutdownDrainsInFlightWork() async throws {
        let redis = try makeRedis()
        let stream = uniqueName("aiim:test:drain")
        try await redis.command(["XGROUP", "CREATE", stream, "g", "0", "MKSTREAM"])
        let started = NIOLockedValueBox(0)
        let finished = NIOLockedValueBox(0)
        let consumer = StreamConsumer(
            redis: redis,
            settings: ConsumerSettings(stream: stream, group: "g", consumer: "c", concurrency: 10, block: .milliseconds(100)),
            origin: "test", logger: TestLog.logger
        ) { _ in
            started.withLockedValue { $0 += 1 }
            try await Task.sleep(for: .milliseconds(700))
            finished.withLockedValue { $0 += 1 }
            return nil
        }
        let group = ServiceGroup(configuration: .init(services: [consumer], logger: TestLog.logger))
        try await withThrowingTaskGroup(of: Void.self) { tg in
            tg.addTask { try await group.run() }
            for i in 0..<5 {
                try await redis.xadd(stream, maxLen: 100, envelope: try Envelope.make(type: "work", payload: ["n": i]))
            }
            #expect(try await eventually { started.withLockedValue { $0 } == 5 })
            await group.triggerGracefulShutdown()
            try await tg.waitForAll()
        }
        #expect(finished.withLockedValue { $0 } == 5)
        let pending = try await redis.command(["XPENDING", stream, "g"])
        #expect(pending.array?.first?.int == 0)
        try await redis.command(["DEL", stream])
        await redis.shutdown()
    }

    @Test func readinessReportsRedisDownThenRecoversByItself() async throws {
        let port = freePort()
        let redis = try RedisClient(url: "redis://127.0.0.1:\(port)/0", poolSize: 1, commandTimeout: .seconds(1), logger: TestLog.logger)
        let readiness = Readiness(components: ["redis"])
        let monitor = DependencyMonitor(readiness: readiness, checks: [("redis", { try await redis.ping() })], logger: TestLog.logger)
        await monitor.checkAll()
        #expect(readiness.report().ready == false)
        #expect(readiness.report().down["redis"] != nil)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("redis"))
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
        server.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir.path]
        // No inherited stdout/stderr: a leftover child holding the test runner's pipe would hang `swift test`.
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { kill(server.processIdentifier, SIGKILL) }
        let up = try await eventually(timeout: .seconds(10)) {
            await monitor.checkAll()
            return readiness.report().ready
        }
        #expect(up)
        await redis.shutdown()
    }
}
