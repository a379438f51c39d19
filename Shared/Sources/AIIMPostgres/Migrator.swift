import AIIMConfiguration
import Crypto
import Foundation
import Logging

/// One numbered SQL migration (`0001_initial.sql`) of one service.
///
/// Every service ships and applies only its own migrations, but all of them are recorded in the
/// one `schema_migrations` table, so versions are unique across services. A migration that
/// needs another service's objects (a foreign key, a view) says so in its header:
///
///     -- requires: 0004
///
/// (several versions separated by commas or spaces; only the leading comment block is read).
/// A migration that was applied before it had an owner cannot gain a header (its checksum would
/// change), so `NNNN_name.requires` beside it may hold the same lines instead.
public struct Migration: Sendable {
    public var version: Int
    public var name: String
    public var sql: String
    /// Versions (usually another service's) that must be applied before this one.
    public var requires: [Int]
    /// Over the SQL alone: a `requires` line in a sidecar file does not change it.
    public var checksum: String { SHA256.hash(data: Data(sql.utf8)).map { String(format: "%02x", $0) }.joined() }
    /// `0003_calls`, as the file is named.
    public var label: String { "\(Migration.padded(version))_\(name)" }

    static func padded(_ version: Int) -> String {
        let digits = String(version)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    public init(version: Int, name: String, sql: String, requires: [Int]? = nil) {
        self.version = version; self.name = name; self.sql = sql
        self.requires = requires ?? Migration.declaredRequirements(sql)
    }

    /// The versions named by `-- requires:` lines of the leading comment block of `text`.
    public static func declaredRequirements(_ text: String) -> [Int] {
        var out: [Int] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard trimmed.hasPrefix("--") else { break }
            let comment = trimmed.dropFirst(2).trimmingCharacters(in: .whitespaces)
            guard comment.lowercased().hasPrefix("requires:") else { continue }
            // `-- requires: 0001 (why)`: the versions come before any explanation.
            let list = comment.dropFirst("requires:".count).prefix { $0 != "(" }
            out += list.split(whereSeparator: { $0 == "," || $0 == " " }).compactMap { Int($0) }
        }
        return out
    }
}

/// A migration could not be applied yet because another service has not applied one it
/// requires. Not a configuration error: the caller retries until that service has migrated.
public struct MigrationWaiting: Error, CustomStringConvertible {
    public var migration: String
    public var missing: [Int]
    public var description: String {
        "migration \(migration) waits for \(missing.map(Migration.padded).joined(separator: ", ")) (another service's)"
    }
}

/// Applies one service's migrations once each, in order, each in its own transaction, recorded
/// in `schema_migrations`. A session advisory lock (one for every service) makes concurrent
/// starts safe: the second process waits, then finds the migrations applied. Rows other services
/// applied are left alone; they only count as applied for `requires`.
public enum Migrator {
    static let lockKey: Int64 = 0x4149_494D  // "AIIM"

    /// The migrations a target ships as resources (`Migrations/NNNN_name.sql`): pass the
    /// target's `Bundle.module`.
    public static func bundled(in bundle: Bundle) throws -> [Migration] {
        guard let dir = bundle.url(forResource: "Migrations", withExtension: nil) else {
            throw ConfigurationError("migrations are missing from the bundle \(bundle.bundlePath)")
        }
        return try load(from: dir)
    }

    public static func load(from dir: URL) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".sql") }
        let migrations = try files.map { f in
            guard let v = Int(f.prefix { $0.isNumber }) else { throw ConfigurationError("bad migration name \(f)") }
            let name = String(f.dropFirst(f.prefix { $0.isNumber }.count).dropFirst().dropLast(4))
            let sql = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
            let sidecar = dir.appendingPathComponent(String(f.dropLast(4)) + ".requires")
            let extra = (try? String(contentsOf: sidecar, encoding: .utf8)).map(Migration.declaredRequirements) ?? []
            return Migration(version: v, name: name, sql: sql, requires: Migration.declaredRequirements(sql) + extra)
        }.sorted { $0.version < $1.version }
        try validate(migrations)
        return migrations
    }

    /// One service's set: unique versions, and no migration requiring itself or a later one of
    /// its own set (that one could never be applied first).
    public static func validate(_ migrations: [Migration]) throws {
        let versions = Set(migrations.map(\.version))
        guard versions.count == migrations.count else { throw ConfigurationError("two migrations share a version") }
        for m in migrations {
            for r in m.requires where r >= m.version && versions.contains(r) {
                throw ConfigurationError("migration \(m.label) requires \(r), which this service applies after it")
            }
        }
    }

    /// Applies what is missing; returns the versions this call applied. Throws
    /// `MigrationWaiting` (after applying the ones before it) when a migration requires a
    /// version nobody has applied yet.
    @discardableResult
    public static func run(_ migrations: [Migration], on client: PostgresClient, logger: Logger) async throws -> [Int] {
        try validate(migrations)
        return try await client.withConnection { conn in
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
            var applied: [Int: (name: String, checksum: String)] = [:]
            for row in try conn.query("SELECT version, name, checksum FROM schema_migrations").rows {
                applied[try row.decode("version")] = (try row.decode("name"), try row.decode("checksum"))
            }
            var done: [Int] = []
            for m in migrations {
                if let row = applied[m.version] {
                    guard row.name == m.name else {
                        throw ConfigurationError("migration version \(m.version) of \(m.label) is taken by \(row.name)")
                    }
                    guard row.checksum == m.checksum else {
                        throw ConfigurationError("migration \(m.label) changed after it was applied")
                    }
                    continue
                }
                let missing = m.requires.filter { applied[$0] == nil }
                guard missing.isEmpty else { throw MigrationWaiting(migration: m.label, missing: missing) }
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
                applied[m.version] = (m.name, m.checksum)
                done.append(m.version)
            }
            return done
        }
    }
}
