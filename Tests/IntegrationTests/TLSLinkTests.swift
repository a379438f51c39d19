import AIIMBackendKit
import AIIMConfiguration
import AIIMJSON
import AIIMPostgres
import AIIMRedis
import Foundation
import GatewayCore
import MessagingCore
import Testing

/// Encrypted links between hosts: `rediss://` to Redis' `tls-port` and libpq's
/// `sslmode=verify-full` to PostgreSQL with `ssl = on`, both with certificates of a CA that
/// `deploy/local/test` generated (`AIIM_TEST_TLS_*`). The Redis TLS port asks for a client
/// certificate (`tls-auth-clients yes`); its server certificate is for `localhost` only.
@Suite struct TLSLinkTests {
    init() { TestLog.bootstrap() }

    static func files(ca: String? = nil, client: Bool = true) throws -> RedisTLSFiles {
        RedisTLSFiles(caFile: try ca ?? TestEnv.value("AIIM_TEST_TLS_CA_FILE"),
                      certificateFile: client ? try TestEnv.value("AIIM_TEST_TLS_CERT_FILE") : nil,
                      keyFile: client ? try TestEnv.value("AIIM_TEST_TLS_KEY_FILE") : nil)
    }

    static func tlsURL(host: String? = nil) throws -> String {
        let url = try TestEnv.value("AIIM_TEST_REDIS_TLS_URL")
        guard let host else { return url }
        var u = try #require(URLComponents(string: url))
        u.host = host
        return try #require(u.string)
    }

    /// The failure of the first command of a client that must not get through: a RedisError.
    /// A generous command timeout: a hang would end as "no TLS handshake within…", which fails.
    static func refusal(_ client: RedisClient) async throws -> String {
        do {
            try await client.command(["SET", uniqueName("tls-refused"), "x"])
        } catch let e as RedisError {
            return e.description
        }
        Issue.record("a command went through")
        return ""
    }

    @Test func redissWithTheRightCARunsCommandsAndStreamReads() async throws {
        let redis = try RedisClient(url: try Self.tlsURL(), poolSize: 2, tls: try Self.files(), logger: TestLog.logger)
        #expect(redis.endpoint.description.hasPrefix("rediss://localhost:"))
        let key = uniqueName("tls")
        try await redis.command(["SET", key, "over tls"])
        #expect(try await redis.command(["GET", key]).text == "over tls")
        // A pipeline of many commands and a large value cross the TLS record boundaries.
        let big = String(repeating: "x", count: 200_000)
        let replies = try await redis.pipeline([["SET", key, big], ["STRLEN", key]] + (0..<50).map { _ in ["INCR", key + ":n"] })
        #expect(replies[1].int == 200_000)
        #expect(replies.last?.int == 50)
        // The blocking reader has its own connection, over TLS too.
        let stream = uniqueName("tls-stream")
        try await redis.command(["XADD", stream, "*", "f", "v"])
        let reader = redis.makeBlockingReader(block: .seconds(1))
        let read = try await reader.command(["XREAD", "COUNT", "1", "BLOCK", "1000", "STREAMS", stream, "0"])
        #expect(read.array?.first?.array?[1].array?.first?.array?[1].array?.map(\.text) == ["f", "v"])
        await reader.shutdown()
        try await redis.command(["DEL", key, key + ":n", stream])
        await redis.shutdown()
    }

    @Test func aWrongCAIsRefusedAtOnceWithTheReason() async throws {
        let other = try TestEnv.value("AIIM_TEST_TLS_OTHER_CA_FILE")
        let redis = try RedisClient(url: try Self.tlsURL(), poolSize: 1, commandTimeout: .seconds(30),
                                    tls: try Self.files(ca: other), logger: TestLog.logger)
        let error = try await Self.refusal(redis)
        #expect(error.contains("TLS handshake with rediss://localhost:"), "\(error)")
        #expect(error.contains("CERTIFICATE_VERIFY_FAILED"), "\(error)")
        #expect(!error.contains("password"))
        await redis.shutdown()
    }

    @Test func aHostNameTheCertificateDoesNotNameIsRefused() async throws {
        // Same server, same CA, but dialled as 127.0.0.1: the certificate is for localhost only.
        let redis = try RedisClient(url: try Self.tlsURL(host: "127.0.0.1"), poolSize: 1, commandTimeout: .seconds(30),
                                    tls: try Self.files(), logger: TestLog.logger)
        let error = try await Self.refusal(redis)
        #expect(error.contains("not for this host name"), "\(error)")
        await redis.shutdown()
    }

    @Test func withoutAClientCertificateTheServerRefuses() async throws {
        let redis = try RedisClient(url: try Self.tlsURL(), poolSize: 1, commandTimeout: .seconds(30),
                                    tls: try Self.files(client: false), logger: TestLog.logger)
        let error = try await Self.refusal(redis)
        #expect(!error.contains("no reply from redis in time") && !error.contains("within"), "\(error)")
        await redis.shutdown()
    }

    @Test func plainRedisToTheTLSPortFailsInsteadOfHanging() async throws {
        // A redis:// client on the TLS port: Redis drops the connection (no hang, no reply).
        var u = try #require(URLComponents(string: try Self.tlsURL()))
        u.scheme = "redis"
        let redis = try RedisClient(url: try #require(u.string), poolSize: 1, commandTimeout: .seconds(30), logger: TestLog.logger)
        let error = try await Self.refusal(redis)
        #expect(!error.contains("no reply from redis in time"), "\(error)")
        await redis.shutdown()
    }

    @Test func misconfiguredTLSRefusesToStart() throws {
        let url = try Self.tlsURL()
        // Certificates next to a clear-text URL: the operator meant TLS.
        #expect(throws: ConfigurationError.self) {
            try RedisEndpoint(url: url.replacingOccurrences(of: "rediss://", with: "redis://"), tls: try Self.files())
        }
        // An unreadable CA file names the variable.
        do {
            _ = try RedisEndpoint(url: url, tls: RedisTLSFiles(caFile: "/nonexistent/ca.pem"))
            Issue.record("a missing CA file was accepted")
        } catch let e as ConfigurationError {
            #expect(e.description.contains("REDIS_TLS_CA_FILE"))
        }
        // A certificate without its key.
        #expect(throws: ConfigurationError.self) {
            try RedisEndpoint(url: url, tls: RedisTLSFiles(caFile: try TestEnv.value("AIIM_TEST_TLS_CA_FILE"),
                                                            certificateFile: try TestEnv.value("AIIM_TEST_TLS_CERT_FILE")))
        }
        // The service settings reach the client: REDIS_TLS_* of the environment.
        let env = Environment(["REDIS_TLS_CA_FILE": "/a", "REDIS_TLS_CERT_FILE": "/b", "REDIS_TLS_KEY_FILE": "/c"])
        #expect(RedisTLSFiles(env) == RedisTLSFiles(caFile: "/a", certificateFile: "/b", keyFile: "/c"))
    }

    // MARK: PostgreSQL (libpq)

    static func databaseTLSURL(_ change: (inout URLComponents) -> Void = { _ in }) throws -> String {
        var u = try #require(URLComponents(string: try TestEnv.value("AIIM_TEST_DATABASE_TLS_URL")))
        change(&u)
        return try #require(u.string)
    }

    static func connectError(_ url: String) async throws -> String {
        let pg = try PostgresClient(url: url, poolSize: 1, logger: TestLog.logger)
        defer { Task { await pg.shutdown() } }
        do {
            _ = try await pg.query("SELECT 1 AS one")
        } catch let e as PostgresError {
            #expect(e.isConnectionError)
            return e.description
        }
        Issue.record("connected")
        return ""
    }

    @Test func postgresVerifyFullConnectsEncrypted() async throws {
        let url = try Self.databaseTLSURL()
        #expect(url.contains("sslmode=verify-full") && url.contains("sslrootcert="))
        let pg = try PostgresClient(url: url, poolSize: 1, logger: TestLog.logger)
        let row = try #require(try await pg.query(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").first)
        #expect(try row.decode("ssl", as: Bool.self))
        #expect(row.optional("version", as: String.self)?.hasPrefix("TLSv1.") == true)
        await pg.shutdown()
    }

    @Test func postgresWithAWrongCAOrHostIsRefused() async throws {
        let other = try TestEnv.value("AIIM_TEST_TLS_OTHER_CA_FILE")
        let wrongCA = try await Self.connectError(try Self.databaseTLSURL { u in
            u.queryItems = u.queryItems?.map { $0.name == "sslrootcert" ? URLQueryItem(name: "sslrootcert", value: other) : $0 }
        })
        #expect(wrongCA.contains("certificate verify failed"), "\(wrongCA)")
        let wrongHost = try await Self.connectError(try Self.databaseTLSURL { $0.host = "127.0.0.1" })
        #expect(wrongHost.contains("does not match host name"), "\(wrongHost)")
    }
}

/// A gateway and a messaging replica whose every Redis and PostgreSQL connection is TLS: the
/// `REDIS_TLS_*` settings reach the services' clients.
@Suite struct TLSStackTests {
    init() { TestLog.bootstrap() }

    @Test func servicesTalkOverRedissAndVerifiedPostgres() async throws {
        let stack = try await Stack.start(env: [
            "REDIS_URL": try TLSLinkTests.tlsURL(),
            "REDIS_TLS_CA_FILE": try TestEnv.value("AIIM_TEST_TLS_CA_FILE"),
            "REDIS_TLS_CERT_FILE": try TestEnv.value("AIIM_TEST_TLS_CERT_FILE"),
            "REDIS_TLS_KEY_FILE": try TestEnv.value("AIIM_TEST_TLS_KEY_FILE"),
            "DATABASE_URL": try TLSLinkTests.databaseTLSURL(),
        ])
        defer { Task { await stack.stop() } }
        #expect(stack.gateways[0].redis.endpoint.tls != nil)
        #expect(stack.messaging[0].runtime.redis.endpoint.tls != nil)
        let alice = try await stack.token("alice")
        let conv = try await stack.conversation(owner: "alice", members: ["bob"])
        let sent = try await stack.http("POST", "/api/aiim/messages", token: alice, body: .object([
            "conversation_id": .string(conv), "content": .string("encrypted hop"), "client_msg_id": .string(uniqueName("tls"))]))
        #expect(sent.status == 200, "\(sent.json)")
        let history = try await stack.http("GET", "/api/aiim/messages/\(conv)", token: try await stack.token("bob"))
        #expect(history.json["messages"]?.arrayValue?.last?["content"]?.stringValue == "encrypted hop", "\(history.json)")
    }
}
