import AIIMConfiguration
import Crypto
import Foundation
import Logging

/// One numbered SQL migration (`0001_initial.sql`).
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var sql: String
    public var checksum: String { SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined() }

    public init(version: Int, name: String, sql: String) {
        self.version = version; self.name = name; self.sql = sql
    }
}

/// Applies migrations once each, in order, each in its own transaction, recorded in
/// `schema_migrations`. A session advisory lock makes concurrent starts safe: the second
/// process waits, then finds the migrations applied.
public enum Migrator {
    static let lockKey: Int64 = 0x4149_494D  // "AIIM"

    /// The project's migrations, shipped as resources (`Migrations/NNNN_name.sql`).
    public static func bundled() throws -> [Migration] {
        guard let dir = Bundle.module.url(forResource: "Migrations", withExtension: nil) else {
            throw ConfigurationError("migrations are missing from the bundle")
        }
        return try load(from: dir)
    }

    public static func load(from dir: URL) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".sql") }
        return try files.map { f in
            guard let v = Int(f.prefix { $0.isNumber }) else { throw ConfigurationError("bad migration name \(f)") }
            let name = String(f.dropFirst(f.prefix { $0.isNumber }.count).dropFirst().dropLast(4))
            return Migration(version: v, name: name, sql: try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8))
        }.sorted { $0.version < $1.version }
    }

    /// Applies what is missing; returns the versions this call applied.
    @discardableResult
    public static func run(_ migrations: [Migration], on client: PostgresClient, logger: Logger) async throws -> [Int] {
        try await client.withConnection { conn in
            // Waiting for another process's migration may take longer than statement_timeout.
            try conn.execute("SET statement_timeout = 0")
            try conn.query("SELECT pg_advisory_lock($1)", [lockKey])
            defer {
                _ = try? conn.query("SELECT pg_advisory_unlock($1)", [lockKey])
                _ = try? conn.execute("SET statement_timeout = \(client.statementTimeoutMillis)")
            }
            try conn.execute("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """)
            var applied: [Int: String] = [:]
            for row in try conn.query("SELECT version, checksum FROM schema_migrations").rows {
                applied[try row.decode("version")] = try row.decode("checksum")
            }
            var done: [Int] = []
            for m in migrations {
                if let sum = applied[m.version] {
                    if sum != m.checksum {
                        throw ConfigurationError("migration \(m.version)_\(m.name) changed after it was applied")
                    }
                    continue
                }
                try conn.execute("BEGIN")
                do {
                    try conn.execute(m.sql)
                    try conn.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                                   [m.version, m.name, m.checksum])
                    try conn.execute("COMMIT")
                } catch {
                    _ = try? conn.execute("ROLLBACK")
                    throw error
                }
                logger.notice("applied migration", metadata: ["version": "\(m.version)", "name": "\(m.name)"])
                done.append(m.version)
            }
            return done
        }
    }
}
