import Logging
import NIOConcurrencyHelpers
import NIOPosix

/// A pool of libpq connections on its own `NIOThreadPool` (threads = maximum connections), so
/// blocking libpq calls never run on Swift's cooperative pool. Every statement is bounded by
/// `statement_timeout`. Broken connections are dropped, so the pool survives a PostgreSQL restart.
public final class PostgresClient: Sendable {
    public let endpoint: PostgresEndpoint
    let threadPool: NIOThreadPool
    let idle = NIOLockedValueBox<[PostgresConnection]>([])
    let statementTimeoutMillis: Int
    let logger: Logger

    public init(url: String, poolSize: Int = 10, statementTimeoutMillis: Int = 5000, logger: Logger) throws {
        endpoint = try PostgresEndpoint(url: url)
        threadPool = NIOThreadPool(numberOfThreads: max(1, poolSize))
        threadPool.start()
        self.statementTimeoutMillis = statementTimeoutMillis
        self.logger = logger
    }

    /// Stops the threads (after running work), then closes idle connections.
    public func shutdown() async {
        try? await threadPool.shutdownGracefully()
        idle.withLockedValue { c in c.forEach { $0.close() }; c.removeAll() }
    }

    /// Leases a connection to `body` on a pool thread.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await threadPool.runIfActive { [self] in
            let conn = try checkout()
            defer { checkin(conn) }
            return try body(conn)
        }
    }

    /// `BEGIN` … `COMMIT`; `ROLLBACK` if `body` throws. Retries once on serialization failure.
    public func withTransaction<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withConnection { conn in
            var tries = 0
            while true {
                tries += 1
                try conn.execute("BEGIN")
                do {
                    let v = try body(conn)
                    try conn.execute("COMMIT")
                    return v
                } catch {
                    if !conn.isBroken { _ = try? conn.execute("ROLLBACK") }
                    if let pe = error as? PostgresError, pe.isSerializationFailure, tries < 3 { continue }
                    throw error
                }
            }
        }
    }

    /// Several statements in one round trip and one transaction (`PostgresConnection.atomically`).
    /// Retried once more on a serialization failure or deadlock.
    public func atomically(_ statements: [(sql: String, params: [any PostgresEncodable])]) async throws -> [PostgresResult] {
        try await withConnection { conn in
            var tries = 0
            while true {
                tries += 1
                do { return try conn.atomically(statements) } catch let e as PostgresError where e.isSerializationFailure && tries < 3 {
                    continue
                }
            }
        }
    }

    @discardableResult
    public func query(_ sql: String, _ params: [any PostgresEncodable] = []) async throws -> PostgresResult {
        try await withConnection { try $0.query(sql, params) }
    }

    private func checkout() throws -> PostgresConnection {
        while let c = idle.withLockedValue({ $0.popLast() }) {
            if !c.isBroken { return c }
            c.close()
        }
        return try PostgresConnection(endpoint: endpoint, statementTimeoutMillis: statementTimeoutMillis)
    }

    private func checkin(_ c: PostgresConnection) {
        if c.isBroken { c.close(); return }
        idle.withLockedValue { $0.append(c) }
    }

    /// `SELECT 1`, for readiness.
    public func ping() async throws {
        try await query("SELECT 1")
    }
}
