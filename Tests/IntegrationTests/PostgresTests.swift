import AIIMConfiguration
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import CallsCore
import Foundation
import MediaCore
import MessagingCore
import NIOConcurrencyHelpers
import Testing

/// The libpq client and migration runner against a real PostgreSQL.
@Suite(.serialized) struct PostgresTests {
    init() { TestLog.bootstrap() }

    @Test func parameterisedQueriesDecodeTypedRows() async throws {
        let pg = try PostgresClient(url: try TestEnv.databaseURL(), poolSize: 2, logger: TestLog.logger)
        let evil = "x'); DROP TABLE nothing; --"
        let row = try #require(try await pg.query(
            "SELECT $1::text AS s, $2::bigint AS n, $3::bool AS b, $4::jsonb AS j, now() AS t",
            [evil, Int64(42), true, JSONValue.object(["k": .array([.number(1), .null])])]).first)
        #expect(try row.decode("s", as: String.self) == evil)
        #expect(try row.decode("n", as: Int64.self) == 42)
        #expect(try row.decode("b", as: Bool.self))
        #expect(try row.decode("j", as: JSONValue.self)["k"] == .array([.number(1), .null]))
        let t = try row.decode("t", as: Date.self)
        #expect(abs(t.timeIntervalSinceNow) < 60)
        await pg.shutdown()
    }

    @Test func errorsCarrySQLStateAndTransactionsRollBack() async throws {
        let schema = uniqueName("tx")
        let pg = try PostgresClient(url: try await TestEnv.isolatedDatabaseURL(schema: schema), poolSize: 2, logger: TestLog.logger)
        try await pg.query("CREATE TABLE t (id int PRIMARY KEY)")
        do {
            _ = try await pg.withTransaction { conn in
                try conn.query("INSERT INTO t VALUES ($1)", [1])
                try conn.query("INSERT INTO t VALUES ($1)", [1])
            }
            Issue.record("duplicate insert succeeded")
        } catch let e as PostgresError {
            #expect(e.isUniqueViolation)
        }
        #expect(try await pg.query("SELECT count(*) AS c FROM t").first?.decode("c", as: Int.self) == 0)
        await pg.shutdown()
    }

    @Test func textArraysCarryAnyStringAndStatementsArePreparedOnce() async throws {
        let pg = try PostgresClient(url: try TestEnv.databaseURL(), poolSize: 1, logger: TestLog.logger)
        let tricky = [#"quote " inside"#, #"back\slash"#, "comma, brace } { ", "", "NULL", "ünï 😀", "x'); DROP TABLE t; --"]
        for _ in 0..<3 {  // the same SQL again runs the prepared statement
            let rows = try await pg.query("SELECT unnest($1::text[]) AS v", [tricky])
            #expect(rows.rows.map { $0.optional("v", as: String.self) } == tricky)
        }
        let prepared = try await pg.query("SELECT count(*) AS c FROM pg_prepared_statements WHERE statement LIKE 'SELECT unnest%'")
        #expect(prepared.first?.optional("c", as: Int.self) == 1)
        await pg.shutdown()
    }

    @Test func pipelinedStatementsCommitOrFailTogether() async throws {
        let schema = uniqueName("pipe")
        let pg = try PostgresClient(url: try await TestEnv.isolatedDatabaseURL(schema: schema), poolSize: 1, logger: TestLog.logger)
        try await pg.query("CREATE TABLE t (id int PRIMARY KEY)")
        let ok = try await pg.atomically([("INSERT INTO t VALUES ($1)", [1]), ("INSERT INTO t VALUES ($1) RETURNING id", [2])])
        #expect(ok.count == 2 && ok[1].first?.optional("id", as: Int.self) == 2)
        do {
            _ = try await pg.atomically([("INSERT INTO t VALUES ($1)", [3]), ("INSERT INTO t VALUES ($1)", [1]),
                                         ("INSERT INTO t VALUES ($1)", [4])])
            Issue.record("a duplicate key inside the pipeline went through")
        } catch let e as PostgresError {
            #expect(e.isUniqueViolation)
        }
        // Nothing of the failed group stayed (3 was rolled back, 4 never ran); the connection still works.
        let ids = try await pg.query("SELECT id FROM t ORDER BY id").rows.compactMap { $0.optional("id", as: Int.self) }
        #expect(ids == [1, 2])
        await pg.shutdown()
    }

    @Test func statementTimeoutBoundsEveryQuery() async throws {
        let pg = try PostgresClient(url: try TestEnv.databaseURL(), poolSize: 1, statementTimeoutMillis: 200, logger: TestLog.logger)
        let start = ContinuousClock.now
        do {
            try await pg.query("SELECT pg_sleep(5)")
            Issue.record("pg_sleep(5) was not cancelled")
        } catch let e as PostgresError {
            #expect(e.isStatementTimeout)
        }
        #expect(ContinuousClock.now - start < .seconds(2))
        await pg.shutdown()
    }

    @Test func migrationsApplyOnceWhenTwoProcessesRace() async throws {
        let url = try await TestEnv.isolatedDatabaseURL(schema: uniqueName("mig"))
        // Not idempotent on purpose: applying twice would fail.
        let migrations = [
            Migration(version: 1, name: "one", sql: "CREATE TABLE a (id int); SELECT pg_sleep(0.3);"),
            Migration(version: 2, name: "two", sql: "CREATE TABLE b (id int); INSERT INTO b VALUES (1);"),
        ]
        let p1 = try PostgresClient(url: url, poolSize: 1, logger: TestLog.logger)
        let p2 = try PostgresClient(url: url, poolSize: 1, logger: TestLog.logger)
        async let r1 = Migrator.run(migrations, on: p1, logger: TestLog.logger)
        async let r2 = Migrator.run(migrations, on: p2, logger: TestLog.logger)
        let (a, b) = try await (r1, r2)
        #expect((a + b).sorted() == [1, 2])
        #expect(try await p1.query("SELECT count(*) AS c FROM schema_migrations").first?.decode("c", as: Int.self) == 2)
        #expect(try await p1.query("SELECT count(*) AS c FROM b").first?.decode("c", as: Int.self) == 1)
        // A third start applies nothing.
        #expect(try await Migrator.run(migrations, on: p1, logger: TestLog.logger).isEmpty)
        // Editing an applied migration is refused.
        var edited = migrations
        edited[1].sql += " -- changed"
        await #expect(throws: ConfigurationError.self) { try await Migrator.run(edited, on: p2, logger: TestLog.logger) }
        await p1.shutdown()
        await p2.shutdown()
    }

    @Test func eachServiceAppliesOnlyItsOwnMigrationsAndWaitsForThoseItRequires() async throws {
        let url = try await TestEnv.isolatedDatabaseURL(schema: uniqueName("owned"))
        let pg = try PostgresClient(url: url, poolSize: 1, logger: TestLog.logger)
        let messaging = try MessagingService.migrations(), media = try MediaService.migrations()
        let calls = try CallsService.migrations()
        func versions() async throws -> [Int] {
            try await pg.query("SELECT version FROM schema_migrations ORDER BY version").rows.map { try $0.decode("version") }
        }
        // A new deployment where calls and media start first: calls' 0003 has a foreign key to
        // messaging's conversations; media applies its table, then waits for messaging's view.
        do {
            try await Migrator.run(calls, on: pg, logger: TestLog.logger)
            Issue.record("calls migrated before messaging")
        } catch let e as MigrationWaiting { #expect(e.missing == [1]) }
        do {
            try await Migrator.run(media, on: pg, logger: TestLog.logger)
            Issue.record("media migrated before messaging's view")
        } catch let e as MigrationWaiting { #expect(e.missing == [4]) }
        #expect(try await versions() == [2])
        #expect(try await Migrator.run(messaging, on: pg, logger: TestLog.logger) == [1, 4, 7, 8, 9, 10])
        #expect(try await Migrator.run(calls, on: pg, logger: TestLog.logger) == [3, 6])
        #expect(try await Migrator.run(media, on: pg, logger: TestLog.logger) == [5])
        // Restarts apply nothing: no service is confused by the rows the others applied.
        for set in [messaging, media, calls] {
            #expect(try await Migrator.run(set, on: pg, logger: TestLog.logger).isEmpty)
        }
        #expect(try await versions() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])

        // The view other services read is messaging's membership, and it is read-only.
        try await pg.query("INSERT INTO conversations (conversation_id, tenant_id, type, created_by) VALUES ('c', 't', 'group', 'u')")
        try await pg.query("INSERT INTO conversation_members (conversation_id, user_id, tenant_id, role) VALUES ('c', 'u', 't', 'owner')")
        let row = try #require(try await pg.query("SELECT * FROM messaging_members").first)
        #expect(try row.decode("conversation_id", as: String.self) == "c" && row.decode("tenant_id", as: String.self) == "t")
        #expect(try row.decode("user_id", as: String.self) == "u" && row.decode("role", as: String.self) == "owner")
        await #expect(throws: PostgresError.self) {
            try await pg.query("INSERT INTO messaging_members (conversation_id, tenant_id, user_id, role) VALUES ('c', 't', 'v', 'member')")
        }
        await #expect(throws: PostgresError.self) { try await pg.query("DELETE FROM messaging_members") }
        #expect(try await pg.query("SELECT count(*) AS n FROM conversation_members").first?.decode("n", as: Int.self) == 1)
        await pg.shutdown()
    }

    @Test func aVersionAnotherServiceTookIsRefused() async throws {
        let url = try await TestEnv.isolatedDatabaseURL(schema: uniqueName("taken"))
        let pg = try PostgresClient(url: url, poolSize: 1, logger: TestLog.logger)
        try await Migrator.run([Migration(version: 1, name: "mine", sql: "CREATE TABLE a (id int)")], on: pg, logger: TestLog.logger)
        await #expect(throws: ConfigurationError.self) {
            try await Migrator.run([Migration(version: 1, name: "theirs", sql: "CREATE TABLE b (id int)")], on: pg, logger: TestLog.logger)
        }
        await pg.shutdown()
    }
}

/// Tests that restart a server; `deploy/local/test` runs them alone, after everything else.
@Suite(.serialized) struct DisruptiveTests {
    init() { TestLog.bootstrap() }

    @Test func poolSurvivesAPostgresRestart() async throws {
        let pgctl = try TestEnv.value("AIIM_TEST_PGCTL")
        let pg = try PostgresClient(url: try TestEnv.databaseURL(), poolSize: 3, logger: TestLog.logger)
        // Fill the pool with open connections.
        try await withThrowingTaskGroup(of: Void.self) { g in
            for _ in 0..<3 { g.addTask { try await pg.query("SELECT pg_sleep(0.05)") } }
            try await g.waitForAll()
        }
        try await shell(pgctl + " restart")
        let failures = NIOLockedValueBox(0)
        let recovered = try await eventually(timeout: .seconds(20)) {
            do { try await pg.query("SELECT 1"); return true } catch { failures.withLockedValue { $0 += 1 }; return false }
        }
        #expect(recovered)
        // Each stale connection fails at most once; then the pool reconnects.
        #expect(failures.withLockedValue { $0 } <= 3)
        await pg.shutdown()
    }
}

/// Runs a shell command without blocking a cooperative thread (there are only as many as cores):
/// polls `waitpid` (Foundation's termination handler proved unreliable for this here).
func shell(_ command: String) async throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/bash")
    p.arguments = ["-c", command]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    let pid = p.processIdentifier
    var status: Int32 = 0
    let deadline = ContinuousClock.now + .seconds(60)
    while waitpid(pid, &status, WNOHANG) == 0 {
        guard ContinuousClock.now < deadline else {
            kill(pid, SIGKILL)
            throw AIIMError(.timeout, "`\(command)` did not finish in 60 s")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    let exitCode = (status >> 8) & 0xff
    if exitCode != 0 { throw AIIMError(.internalError, "`\(command)` exited \(exitCode)") }
}
