import AIIMConfiguration
import AIIMPostgres
import AIIMProtocol
import AIIMRedis
import Foundation
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The servers `deploy/local/test` started for this run. A missing variable fails the test:
/// these tests are never skipped silently.
enum TestEnv {
    static func value(_ key: String) throws -> String {
        guard let v = ProcessInfo.processInfo.environment[key], !v.isEmpty else {
            Issue.record("\(key) is not set: run the tests with deploy/local/test, which starts the servers")
            throw TestEnvMissing()
        }
        return v
    }
    static func redisURL() throws -> String { try value("AIIM_TEST_REDIS_URL") }
    static func databaseURL() throws -> String { try value("AIIM_TEST_DATABASE_URL") }

    /// A database URL whose tables live in a fresh schema of their own.
    static func isolatedDatabaseURL(schema: String) async throws -> String {
        let url = try databaseURL()
        let admin = try PostgresClient(url: url, poolSize: 1, logger: TestLog.logger)
        try await admin.query("CREATE SCHEMA IF NOT EXISTS \(schema)")
        await admin.shutdown()
        return url + (url.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
    }

    /// Environment for building services against the test servers.
    static func serviceEnvironment(_ extra: [String: String] = [:]) throws -> Environment {
        var v: [String: String] = [
            "REDIS_URL": try redisURL(), "DATABASE_URL": try databaseURL(),
            "HTTP_HOST": "127.0.0.1", "HTTP_PORT": String(freePort()),
            "JWT_SECRET": "test-secret-0123456789abcdef0123456789abcdef",
        ]
        v.merge(extra) { _, new in new }
        return Environment(v)
    }
}

struct TestEnvMissing: Error {}

/// Captures every log line in memory (with the trace metadata), so tests can assert that one
/// trace id appears in several services' logs.
enum TestLog {
    static let lines = NIOLockedValueBox<[(label: String, message: String, metadata: Logger.Metadata)]>([])
    static let bootstrapOnce: Void = {
        LoggingSystem.bootstrap({ label, provider in
            CapturingHandler(label: label, metadataProvider: provider)
        }, metadataProvider: Trace.metadataProvider)
    }()
    static var logger: Logger {
        _ = bootstrapOnce
        return Logger(label: "aiim.tests")
    }
    static func bootstrap() { _ = bootstrapOnce }

    static func lines(withTrace traceID: String) -> [(label: String, message: String)] {
        lines.withLockedValue { all in
            all.filter { $0.metadata["trace_id"]?.description == traceID }.map { ($0.label, $0.message) }
        }
    }
}

struct CapturingHandler: LogHandler {
    var label: String
    var metadataProvider: Logger.MetadataProvider?
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let p = metadataProvider { all.merge(p.get()) { _, n in n } }
        if let m = event.metadata { all.merge(m) { _, n in n } }
        TestLog.lines.withLockedValue { $0.append((label, event.message.description, all)) }
    }
}

/// A TCP port nobody listens on right now.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(10), _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

func uniqueName(_ prefix: String) -> String {
    "\(prefix)_\(UUID().uuidString.prefix(8).lowercased())"
}

/// Starts a built executable of this run (`AIIM_TEST_BIN_DIR`) as a real process a test can
/// SIGKILL, with this process's environment plus `env`, its output in `log`.
func startBuiltProcess(_ name: String, env extra: [String: String], log: URL) throws -> Process {
    let bin = try TestEnv.value("AIIM_TEST_BIN_DIR")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: bin).appendingPathComponent(name)
    p.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
    _ = FileManager.default.createFile(atPath: log.path, contents: nil)
    let out = try FileHandle(forWritingTo: log)
    p.standardOutput = out
    p.standardError = out
    try p.run()
    return p
}

/// Runs `services` in a service group while `body` runs, then shuts the group down gracefully.
func withServices<T: Sendable>(_ services: [any Service], _ body: @Sendable () async throws -> T) async throws -> T {
    let group = ServiceGroup(configuration: .init(services: services, logger: TestLog.logger))
    return try await withThrowingTaskGroup(of: Void.self) { tg in
        tg.addTask { try await group.run() }
        defer { Task { await group.triggerGracefulShutdown() } }  // unstructured: defer cannot await
        let r = try await body()
        await group.triggerGracefulShutdown()
        try await tg.waitForAll()
        return r
    }
}
