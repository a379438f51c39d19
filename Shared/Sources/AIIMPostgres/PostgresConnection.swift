import AIIMConfiguration
import AIIMJSON
internal import CLibpq
import Foundation

/// Why a PostgreSQL call failed. `description` (server text, SQL) is for logs only; it is
/// never sent to clients.
public struct PostgresError: Error, CustomStringConvertible {
    /// SQLSTATE, e.g. `23505` for a unique violation; nil for connection problems.
    public var sqlState: String?
    public var description: String
    /// The connection is unusable (server gone, restarted, network).
    public var isConnectionError: Bool

    public var isUniqueViolation: Bool { sqlState == "23505" }
    public var isForeignKeyViolation: Bool { sqlState == "23503" }
    public var isSerializationFailure: Bool { sqlState == "40001" || sqlState == "40P01" }
    public var isStatementTimeout: Bool { sqlState == "57014" }

    /// Worth retrying: the connection broke (class 08, or no SQLSTATE at all because libpq lost
    /// the server), a serialization failure or deadlock (40), the server lacks resources (53),
    /// it is shutting down or starting (57P01–57P03), or a statement ran into `statement_timeout`
    /// (57014, an overloaded server). Everything else (data errors 22, constraint violations 23,
    /// syntax and access errors 42, …) fails the same way every time: it is permanent.
    public var isTransient: Bool {
        if isConnectionError { return true }
        guard let s = sqlState else { return false }
        return s.hasPrefix("08") || s.hasPrefix("40") || s.hasPrefix("53") || s.hasPrefix("57P") || s == "57014"
    }

    /// The SQLSTATE class, its first two characters (`22`, `23`, `42`, …).
    public var sqlStateClass: String? { sqlState.map { String($0.prefix(2)) } }
}

/// A value bound to a `$n` parameter (sent in text format; never spliced into SQL).
public protocol PostgresEncodable: Sendable {
    var postgresText: String? { get }
}
extension String: PostgresEncodable { public var postgresText: String? { self } }
extension Int: PostgresEncodable { public var postgresText: String? { String(self) } }
extension Int64: PostgresEncodable { public var postgresText: String? { String(self) } }
extension Int32: PostgresEncodable { public var postgresText: String? { String(self) } }
extension Double: PostgresEncodable { public var postgresText: String? { String(self) } }
extension Bool: PostgresEncodable { public var postgresText: String? { self ? "t" : "f" } }
extension Date: PostgresEncodable { public var postgresText: String? { Timestamp.iso8601(self) } }
extension JSONValue: PostgresEncodable { public var postgresText: String? { jsonString() } }
extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresText: String? { self?.postgresText }
}
extension Array: PostgresEncodable where Element == String {
    /// A `text[]` literal: every element quoted, `"` and `\` escaped.
    public var postgresText: String? {
        var out: [UInt8] = [UInt8(ascii: "{")]
        out.reserveCapacity(2 + reduce(0) { $0 + $1.utf8.count + 3 })
        for (i, element) in enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "\""))
            for b in element.utf8 {
                if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                out.append(b)
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}

/// A value read from a text-format column.
public protocol PostgresDecodable: Sendable {
    init?(postgresText: String)
}
extension String: PostgresDecodable { public init?(postgresText: String) { self = postgresText } }
extension Int: PostgresDecodable { public init?(postgresText: String) { self.init(postgresText) } }
extension Int64: PostgresDecodable { public init?(postgresText: String) { self.init(postgresText) } }
extension Double: PostgresDecodable { public init?(postgresText: String) { self.init(postgresText) } }
extension Bool: PostgresDecodable { public init?(postgresText: String) { self = postgresText == "t" } }
extension JSONValue: PostgresDecodable {
    public init?(postgresText: String) {
        guard let v = try? JSONValue(parsing: postgresText) else { return nil }
        self = v
    }
}
extension Date: PostgresDecodable {
    /// Parses `timestamptz` text in ISO DateStyle with UTC session time zone:
    /// `2026-11-25 13:30:38.123456+00`.
    public init?(postgresText s: String) {
        let u = Array(s.utf8)
        guard u.count >= 19 else { return nil }
        func num(_ a: Int, _ b: Int) -> Int? {
            var v = 0
            for i in a..<b { let c = u[i]; guard c >= 48 && c <= 57 else { return nil }; v = v * 10 + Int(c - 48) }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13),
              let mi = num(14, 16), let se = num(17, 19) else { return nil }
        var frac = 0.0
        var i = 19
        if i < u.count, u[i] == 46 {  // "."
            var scale = 0.1
            i += 1
            while i < u.count, u[i] >= 48, u[i] <= 57 { frac += Double(u[i] - 48) * scale; scale /= 10; i += 1 }
        }
        var t = tm()
        t.tm_year = Int32(y - 1900); t.tm_mon = Int32(mo - 1); t.tm_mday = Int32(d)
        t.tm_hour = Int32(h); t.tm_min = Int32(mi); t.tm_sec = Int32(se)
        let secs = timegm(&t)
        self = Date(timeIntervalSince1970: Double(secs) + frac)
    }
}

/// One result row. Column lookup by name; values are converted on the pool thread.
public struct PostgresRow: Sendable {
    let columns: [String: Int]
    public let values: [String?]

    public func decode<T: PostgresDecodable>(_ column: String, as: T.Type = T.self) throws -> T {
        guard let i = columns[column], let text = values[i], let v = T(postgresText: text) else {
            throw PostgresError(sqlState: nil, description: "column \(column) missing, null or not \(T.self)", isConnectionError: false)
        }
        return v
    }

    public func optional<T: PostgresDecodable>(_ column: String, as: T.Type = T.self) -> T? {
        guard let i = columns[column], let text = values[i] else { return nil }
        return T(postgresText: text)
    }
}

/// A finished query: its rows and the number of rows a command affected.
public struct PostgresResult: Sendable {
    public var rows: [PostgresRow]
    public var affectedRows: Int
    public var first: PostgresRow? { rows.first }
}

/// Where PostgreSQL is, from `DATABASE_URL`; the description never shows the password.
public struct PostgresEndpoint: Sendable, CustomStringConvertible {
    public var url: String
    public init(url: String) throws {
        guard let u = URLComponents(string: url), ["postgres", "postgresql"].contains(u.scheme ?? ""), u.host != nil else {
            throw ConfigurationError("DATABASE_URL must look like postgres://user:password@host:port/db")
        }
        self.url = url
    }
    public var description: String {
        guard let u = URLComponents(string: url) else { return "postgres://?" }
        return "postgres://\(u.user ?? "")@\(u.host ?? ""):\(u.port ?? 5432)\(u.path)"
    }
}

/// One libpq connection.
///
/// `@unchecked Sendable`: a `PGconn` is not thread-safe; the pool leases a connection to exactly
/// one closure on one pool thread at a time and never lets it escape (`PostgresClient.withConnection`).
public final class PostgresConnection: @unchecked Sendable {
    private var conn: OpaquePointer?

    init(endpoint: PostgresEndpoint, statementTimeoutMillis: Int, connectTimeoutSeconds: Int = 5) throws {
        let sep = endpoint.url.contains("?") ? "&" : "?"
        let url = endpoint.url + "\(sep)connect_timeout=\(connectTimeoutSeconds)&tcp_user_timeout=10000&keepalives_idle=10&application_name=aiim"
        guard let c = PQconnectdb(url) else {
            throw PostgresError(sqlState: nil, description: "cannot allocate PGconn", isConnectionError: true)
        }
        if PQstatus(c) != CONNECTION_OK {
            let msg = String(cString: PQerrorMessage(c)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(c)
            throw PostgresError(sqlState: nil, description: "connect \(endpoint): \(msg)", isConnectionError: true)
        }
        conn = c
        do {
            // enable_seqscan = off: every query of AIIM is meant to be an index lookup, and a
            // statement is planned once per connection. A plan made while a table was empty or
            // freshly analysed as empty (a new deployment) read `im_messages` sequentially in every
            // batch insert: 2,500 instead of 5,500 msg/s. Tables without a usable index are still
            // scanned; planning every execution instead cost ~10 % of the throughput.
            _ = try execute("""
                SET statement_timeout = \(statementTimeoutMillis); SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; \
                SET client_min_messages = warning; SET enable_seqscan = off
                """)
        } catch {
            close()
            throw error
        }
    }

    deinit { assert(conn == nil, "PostgresConnection dropped without close()") }

    public func close() {
        if let c = conn { PQfinish(c) }
        conn = nil
    }

    /// Unusable: the pool drops it and opens a new one next time.
    public var isBroken: Bool {
        guard let c = conn else { return true }
        return PQstatus(c) != CONNECTION_OK
    }

    /// A parameterised statement (`$1`, `$2`, …). Values are bound, never interpolated.
    /// Each distinct SQL text is prepared once per connection (up to `maxPrepared`), so
    /// PostgreSQL parses and plans it once, not on every call.
    @discardableResult
    public func query(_ sql: String, _ params: [any PostgresEncodable] = []) throws -> PostgresResult {
        guard let c = conn else { throw PostgresError(sqlState: nil, description: "connection closed", isConnectionError: true) }
        let name = try preparedName(sql, conn: c)
        let res: OpaquePointer? = Self.withValues(params) { n, values in
            if let name { return PQexecPrepared(c, name, n, values, nil, nil, 0) }
            return PQexecParams(c, sql, n, nil, values, nil, nil, 0)
        }
        do {
            return try Self.consume(res, conn: c)
        } catch let e as PostgresError where name != nil && e.sqlState == "0A000" {
            // "cached plan must not change result type": the schema changed under the statement.
            // Forget it and run the text once more; the next call prepares it afresh.
            forget(sql, conn: c)
            return try query(sql, params)
        }
    }

    /// Runs `statements` in one round trip and one implicit transaction (libpq pipeline mode,
    /// one Sync at the end): they execute in order, and if one fails the ones after it are
    /// skipped and everything is rolled back, so the group commits or fails as a whole.
    /// Returns one result per statement; throws the first error.
    public func atomically(_ statements: [(sql: String, params: [any PostgresEncodable])]) throws -> [PostgresResult] {
        guard let c = conn else { throw PostgresError(sqlState: nil, description: "connection closed", isConnectionError: true) }
        // Prepared before the pipeline starts (a no-op once they are).
        let names = try statements.map { try preparedName($0.sql, conn: c) }
        guard PQenterPipelineMode(c) == 1 else { throw Self.connectionError(c) }
        var sendFailed = false
        for (statement, name) in zip(statements, names) {
            let ok: Int32 = Self.withValues(statement.params) { n, values in
                if let name { return PQsendQueryPrepared(c, name, n, values, nil, nil, 0) }
                return PQsendQueryParams(c, statement.sql, n, nil, values, nil, nil, 0)
            }
            if ok != 1 { sendFailed = true; break }
        }
        if sendFailed || PQpipelineSync(c) != 1 {
            let e = Self.connectionError(c)
            close()
            throw e
        }
        var results: [PostgresResult] = []
        var firstError: PostgresError?
        for _ in statements {
            // One result per statement, then a NULL that ends it.
            let res = PQgetResult(c)
            if res != nil, PQresultStatus(res) == PGRES_PIPELINE_ABORTED {
                PQclear(res)
            } else {
                do { results.append(try Self.consume(res, conn: c)) } catch let e as PostgresError {
                    if firstError == nil { firstError = e }
                    if e.isConnectionError { close(); throw e }
                }
            }
            while let extra = PQgetResult(c) { PQclear(extra) }
        }
        let sync = PQgetResult(c)
        let synced = sync != nil && PQresultStatus(sync) == PGRES_PIPELINE_SYNC
        PQclear(sync)
        guard synced, PQexitPipelineMode(c) == 1 else {
            let e = Self.connectionError(c)
            close()
            throw e
        }
        if let firstError { throw firstError }
        return results
    }

    /// The parameters as libpq wants them (text format, NULL for nil), valid inside `body` only.
    private static func withValues<R>(
        _ params: [any PostgresEncodable], _ body: (Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> R
    ) -> R {
        var cStrings: [UnsafeMutablePointer<CChar>?] = params.map { $0.postgresText.map { strdup($0)! } }
        defer { cStrings.forEach { free($0) } }
        return cStrings.withUnsafeMutableBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: max(1, buf.count)) { p in
                body(Int32(buf.count), buf.isEmpty ? nil : UnsafePointer(p))
            }
        }
    }

    private static func connectionError(_ c: OpaquePointer) -> PostgresError {
        PostgresError(sqlState: nil, description: String(cString: PQerrorMessage(c)), isConnectionError: true)
    }

    /// Statements prepared on this connection, by SQL text.
    private var prepared: [String: String] = [:]
    private var preparedCount = 0
    static let maxPrepared = 256

    private func preparedName(_ sql: String, conn c: OpaquePointer) throws -> String? {
        if let name = prepared[sql] { return name }
        guard prepared.count < Self.maxPrepared else { return nil }
        preparedCount += 1
        let name = "aiim_\(preparedCount)"
        _ = try Self.consume(PQprepare(c, name, sql, 0, nil), conn: c)
        prepared[sql] = name
        return name
    }

    private func forget(_ sql: String, conn c: OpaquePointer) {
        guard let name = prepared.removeValue(forKey: sql) else { return }
        PQclear(PQexec(c, "DEALLOCATE \(name)"))
    }

    /// Runs SQL text that may hold several statements and no parameters (migrations, SET).
    @discardableResult
    public func execute(_ sql: String) throws -> PostgresResult {
        guard let c = conn else { throw PostgresError(sqlState: nil, description: "connection closed", isConnectionError: true) }
        return try Self.consume(PQexec(c, sql), conn: c)
    }

    private static func consume(_ res: OpaquePointer?, conn c: OpaquePointer) throws -> PostgresResult {
        guard let res else {
            throw PostgresError(sqlState: nil, description: String(cString: PQerrorMessage(c)), isConnectionError: true)
        }
        defer { PQclear(res) }
        let status = PQresultStatus(res)
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            let n = Int(PQntuples(res)), f = Int(PQnfields(res))
            var columns: [String: Int] = [:]
            for j in 0..<f { columns[String(cString: PQfname(res, Int32(j)))] = j }
            var rows: [PostgresRow] = []
            rows.reserveCapacity(n)
            for i in 0..<n {
                var vals: [String?] = []
                vals.reserveCapacity(f)
                for j in 0..<f {
                    if PQgetisnull(res, Int32(i), Int32(j)) == 1 { vals.append(nil) }
                    else { vals.append(String(cString: PQgetvalue(res, Int32(i), Int32(j)))) }
                }
                rows.append(PostgresRow(columns: columns, values: vals))
            }
            let affected = Int(String(cString: PQcmdTuples(res))) ?? 0
            return PostgresResult(rows: rows, affectedRows: affected)
        default:
            let state = PQresultErrorField(res, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let msg = String(cString: PQresultErrorMessage(res)).trimmingCharacters(in: .whitespacesAndNewlines)
            let broken = PQstatus(c) != CONNECTION_OK || state == nil || state!.hasPrefix("08") || state == "57P01"
            throw PostgresError(sqlState: state, description: msg, isConnectionError: broken)
        }
    }
}
