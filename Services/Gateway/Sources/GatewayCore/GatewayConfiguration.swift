import AIIMConfiguration
import AIIMProtocol
import AIIMServiceKit

/// Gateway settings, from the environment.
public struct GatewayConfiguration: Sendable {
    public var common: CommonConfiguration
    /// `JWT_SECRET`: HS256 key for user tokens; at least 32 bytes or the gateway refuses to start.
    public var jwtSecret: String
    /// `JWT_ISSUER`: if set, tokens must carry this `iss`.
    public var jwtIssuer: String?
    /// `DEFAULT_TENANT`: tenant of tokens without a `tenant_id` claim. Default `default`.
    public var defaultTenant: String
    /// `RATE_LIMIT_PER_SEC`: requests per second per user (per IP when anonymous), shared by all gateways. Default 50.
    public var rateLimitPerSecond: Int
    /// `BUS_TIMEOUT_MS`: how long the gateway waits for a backend reply. Default 5000.
    public var busTimeoutMillis: Int
    /// `MAX_BODY_BYTES`: largest accepted REST body. Default 1 MiB.
    public var maxBodyBytes: Int
    /// `ENABLE_CORS` / `ALLOWED_ORIGINS`: CORS for browsers; origins comma-separated, no `*` with credentials.
    public var enableCORS: Bool
    public var allowedOrigins: [String]
    /// `WS_SEND_QUEUE`: frames queued per socket before it is closed as a slow consumer (4001). Default 1000.
    public var sendQueueLimit: Int
    /// `WS_PING_INTERVAL`: seconds between server `ping` frames. Default 20.
    public var pingIntervalSeconds: Int
    /// `WS_PING_TIMEOUT`: a socket silent this long (no frame, not even `pong`) is closed (4000). Default 60.
    public var pingTimeoutSeconds: Int
    /// `WS_MAX_FRAME_BYTES`: largest accepted WebSocket message; larger ones close with 1009. Default 65536.
    public var maxFrameBytes: Int
    /// `WS_SEND_QUEUE_BYTES`: bytes queued per socket before it is closed as a slow consumer (4001),
    /// as well as the frame bound `WS_SEND_QUEUE`. Default 4 MiB.
    public var sendQueueBytes: Int
    /// `WS_MAX_CONNECTIONS_PER_USER`: WebSocket connections one user may hold across every gateway
    /// (the presence hash counts them); one more is refused with 429. Default 20.
    public var maxConnectionsPerUser: Int
    /// `WS_MAX_CONNECTIONS`: WebSocket connections this gateway holds at most; one more is refused
    /// with 503. Default 20000.
    public var maxConnections: Int
    /// `WS_CLOSE_GRACE_MS`: after the gateway closes a socket (4000, 4001, 4002) it waits this long
    /// for the close frame to go out, then drops the TCP connection. Default 2000.
    public var closeGraceMillis: Int
    /// `AUTH_FAILURES_PER_SEC`: failed credential checks (bad or expired JWT, unknown API key) one
    /// client address may cause per second, bursts of 4x, per gateway; past that every request
    /// with a credential from that address gets 429 before any verification. 0 disables. Default 5.
    public var authFailuresPerSecond: Int
    /// `TRUSTED_PROXIES`: comma-separated addresses or CIDR ranges of reverse proxies whose
    /// `X-Forwarded-For` names the client. Default none: the peer address is the client.
    public var trustedProxies: [String]
    /// `HTTP_HEADER_TIMEOUT`: seconds a new connection has to send its first request head. Default 10.
    public var headerTimeoutSeconds: Int
    /// `HTTP_IDLE_TIMEOUT`: seconds an HTTP connection may sit without a request part or a
    /// response before it is closed (keep-alive and slow requests). Default 75.
    public var idleTimeoutSeconds: Int
    /// `GENERATION_DELTA_FRAMES_PER_SEC`: `generation.delta` frames per second per answer (bursts
    /// of twice that; 0 disables). An answer's end, stop and status frames are never held back. Default 200.
    public var generationDeltaFramesPerSecond: Int
    /// `DEV_LOGIN`: `POST /api/aiim/dev/login {user}` hands out a token for any user name, without
    /// a password (the web client's development sign-in). For local development only; the
    /// production templates set false. Default false.
    public var devLogin: Bool

    public init(env: Environment = Environment()) throws {
        common = try CommonConfiguration(service: .gateway, env: env, requireDatabase: false)
        guard let secret = env.string("JWT_SECRET") else {
            throw ConfigurationError("JWT_SECRET is required (at least 32 bytes of random data)")
        }
        try Secrets.check(secret, name: "JWT_SECRET", minBytes: 32)
        guard !secret.lowercased().hasPrefix("secret") else {
            throw ConfigurationError("JWT_SECRET looks like a placeholder; generate a random one")
        }
        jwtSecret = secret
        jwtIssuer = env.string("JWT_ISSUER")
        defaultTenant = env.string("DEFAULT_TENANT", default: "default")!
        rateLimitPerSecond = try env.int("RATE_LIMIT_PER_SEC", default: 50)
        busTimeoutMillis = try env.int("BUS_TIMEOUT_MS", default: 5000)
        maxBodyBytes = try env.int("MAX_BODY_BYTES", default: 1 << 20)
        enableCORS = try env.bool("ENABLE_CORS", default: false)
        allowedOrigins = env.list("ALLOWED_ORIGINS")
        sendQueueLimit = try env.int("WS_SEND_QUEUE", default: 1000)
        pingIntervalSeconds = try env.int("WS_PING_INTERVAL", default: 20)
        pingTimeoutSeconds = try env.int("WS_PING_TIMEOUT", default: 60)
        maxFrameBytes = try env.int("WS_MAX_FRAME_BYTES", default: 64 * 1024)
        sendQueueBytes = try env.int("WS_SEND_QUEUE_BYTES", default: 4 << 20)
        maxConnectionsPerUser = try env.int("WS_MAX_CONNECTIONS_PER_USER", default: 20)
        maxConnections = try env.int("WS_MAX_CONNECTIONS", default: 20_000)
        closeGraceMillis = try env.int("WS_CLOSE_GRACE_MS", default: 2000)
        authFailuresPerSecond = try env.int("AUTH_FAILURES_PER_SEC", default: 5)
        trustedProxies = env.list("TRUSTED_PROXIES")
        headerTimeoutSeconds = try env.int("HTTP_HEADER_TIMEOUT", default: 10)
        idleTimeoutSeconds = try env.int("HTTP_IDLE_TIMEOUT", default: 75)
        guard sendQueueLimit > 0, pingIntervalSeconds > 0, pingTimeoutSeconds > pingIntervalSeconds, maxFrameBytes >= 1024,
              sendQueueBytes >= 64 * 1024, maxConnectionsPerUser > 0, maxConnections > 0, closeGraceMillis >= 0 else {
            throw ConfigurationError("WS_* settings are out of range (timeout must exceed interval, WS_SEND_QUEUE_BYTES ≥ 65536)")
        }
        guard authFailuresPerSecond >= 0, headerTimeoutSeconds > 0, idleTimeoutSeconds > 0 else {
            throw ConfigurationError("AUTH_FAILURES_PER_SEC, HTTP_HEADER_TIMEOUT and HTTP_IDLE_TIMEOUT are out of range")
        }
        do { _ = try TrustedProxies(trustedProxies) } catch {
            throw ConfigurationError("TRUSTED_PROXIES: \(error)")
        }
        generationDeltaFramesPerSecond = try env.int("GENERATION_DELTA_FRAMES_PER_SEC", default: 200)
        guard generationDeltaFramesPerSecond >= 0 else { throw ConfigurationError("GENERATION_DELTA_FRAMES_PER_SEC must not be negative") }
        devLogin = try env.bool("DEV_LOGIN", default: false)
    }
}
