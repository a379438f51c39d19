import AIIMConfiguration
import AIIMProtocol
import Foundation

/// Settings every service reads.
public struct CommonConfiguration: Sendable {
    /// `SERVICE_NAME`-independent: which service this process is.
    public var service: ServiceName
    /// `INSTANCE_ID`: unique per process; names its reply stream and consumer. Default `<service>-<host>-<pid>`.
    public var instanceID: String
    /// `REDIS_URL`: `redis://[:password@]host:port[/db]` (required); `rediss://` for TLS.
    public var redisURL: String
    /// `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE` (PEM) for a `rediss://`
    /// URL: the CAs the server's certificate must chain to (default the system store), and the
    /// client certificate and key a server with `tls-auth-clients yes` asks for.
    public var redisTLSCAFile: String?
    public var redisTLSCertFile: String?
    public var redisTLSKeyFile: String?
    /// `DATABASE_URL`: `postgres://user:password@host:port/db` (required except for the gateway).
    public var databaseURL: String?
    /// `HTTP_HOST` / `HTTP_PORT`: where `/health`, `/ready`, `/metrics` (and the gateway API) listen.
    public var httpHost: String
    public var httpPort: Int
    /// `LOG_LEVEL`: trace, debug, info, notice, warning, error, critical. Default info.
    public var logLevel: String
    /// `REDIS_POOL_SIZE`: pipelined connections for ordinary Redis commands. Default 4.
    public var redisPoolSize: Int
    /// `DB_POOL_SIZE` (alias `CONNECTION_POOL_SIZE`): PostgreSQL connections. Default 10.
    public var databasePoolSize: Int
    /// `QUERY_TIMEOUT`: statement_timeout in milliseconds for every query. Default 5000.
    public var queryTimeoutMillis: Int
    /// `STREAM_MAXLEN`: approximate cap of every stream (`XADD MAXLEN ~`). Default 100000.
    public var streamMaxLength: Int
    /// `CONSUMER_CONCURRENCY`: commands a replica handles at once. Default 64.
    public var consumerConcurrency: Int
    /// `MAX_ATTEMPTS`: deliveries of one command before it goes to the dead-letter stream. Default 5.
    public var maxAttempts: Int
    /// `RECLAIM_IDLE_MS`: a pending command idle this long belongs to a dead consumer and is reclaimed. Default 15000.
    public var reclaimIdleMillis: Int
    /// `REDIS_MEMORY_BUDGET`: bytes of Redis memory past which the shared streams are trimmed
    /// (`StreamBudget`). Default 0: 80 % of Redis' `maxmemory` (no trimming by memory when
    /// Redis has no `maxmemory`).
    public var redisMemoryBudgetBytes: Int
    /// `REDIS_MEMORY_CHECK_MS`: how often Redis memory is checked (and reported on `/ready`). Default 1000.
    public var redisMemoryCheckMillis: Int

    public init(service: ServiceName, env: Environment = Environment(), requireDatabase: Bool) throws {
        self.service = service
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        instanceID = env.string("INSTANCE_ID") ?? "\(service.rawValue)-\(host)-\(getpid())"
        redisURL = try env.require("REDIS_URL")
        redisTLSCAFile = env.string("REDIS_TLS_CA_FILE")
        redisTLSCertFile = env.string("REDIS_TLS_CERT_FILE")
        redisTLSKeyFile = env.string("REDIS_TLS_KEY_FILE")
        databaseURL = env.string("DATABASE_URL")
        if requireDatabase && databaseURL == nil { throw ConfigurationError("DATABASE_URL is required") }
        try Secrets.checkURLPassword(redisURL, name: "REDIS_URL")
        if let databaseURL { try Secrets.checkURLPassword(databaseURL, name: "DATABASE_URL") }
        httpHost = env.string("HTTP_HOST", default: "0.0.0.0")!
        httpPort = try env.int("HTTP_PORT", default: 8080)
        logLevel = env.string("LOG_LEVEL", default: "info")!.lowercased()
        redisPoolSize = try env.int("REDIS_POOL_SIZE", default: 4)
        databasePoolSize = try env.int("DB_POOL_SIZE", default: env.int("CONNECTION_POOL_SIZE", default: 10))
        queryTimeoutMillis = try env.int("QUERY_TIMEOUT", default: 5000)
        streamMaxLength = try env.int("STREAM_MAXLEN", default: 100_000)
        consumerConcurrency = try env.int("CONSUMER_CONCURRENCY", default: 64)
        maxAttempts = try env.int("MAX_ATTEMPTS", default: 5)
        reclaimIdleMillis = try env.int("RECLAIM_IDLE_MS", default: 15_000)
        redisMemoryBudgetBytes = try env.int("REDIS_MEMORY_BUDGET", default: 0)
        redisMemoryCheckMillis = try env.int("REDIS_MEMORY_CHECK_MS", default: 1000)
        guard (1...65535).contains(httpPort) else { throw ConfigurationError("HTTP_PORT must be 1...65535") }
    }
}
