import AIIMConfiguration
import Foundation

/// Settings of the calls service, from the environment.
public struct CallsConfiguration: Sendable {
    /// `CALL_RING_TIMEOUT`: seconds an unanswered call rings before it is `missed`. Default 45.
    public var ringTimeout: Double
    /// `CALL_DISCONNECT_GRACE`: seconds a participant whose last WebSocket closed may take to
    /// come back before the call is `failed`. Default 30.
    public var disconnectGrace: Double
    /// `CALL_TIMER_INTERVAL_MS`: how often each replica scans PostgreSQL for expired calls and
    /// unpublished events. Default 1000.
    public var timerInterval: Duration
    /// `CALL_MAX_DURATION_SECONDS`: an answered call still going this long after its answer is
    /// ended by the timer (`completed`, `ended_by` null), so a call nothing else ends cannot hold
    /// its participants forever. Default 14400 (4 h).
    public var maxDuration: Double
    /// `CALL_PRESENCE_CHECK_MS`: how often each replica checks that the participants of answered
    /// calls still have a connection (the gateways' presence hash, which expires by itself when
    /// their gateway dies); one without starts the disconnect grace. Default 5000.
    public var presenceCheckInterval: Duration
    /// STUN/TURN servers and the TURN shared secret.
    public var turn: TURNConfiguration

    public init(env: Environment = Environment()) throws {
        ringTimeout = try env.double("CALL_RING_TIMEOUT", default: 45)
        guard ringTimeout > 0, ringTimeout <= 600 else { throw ConfigurationError("CALL_RING_TIMEOUT must be 0-600 seconds") }
        disconnectGrace = try env.double("CALL_DISCONNECT_GRACE", default: 30)
        guard disconnectGrace >= 0, disconnectGrace <= 600 else {
            throw ConfigurationError("CALL_DISCONNECT_GRACE must be 0-600 seconds")
        }
        let interval = try env.int("CALL_TIMER_INTERVAL_MS", default: 1000)
        guard (10...60_000).contains(interval) else { throw ConfigurationError("CALL_TIMER_INTERVAL_MS must be 10-60000") }
        timerInterval = .milliseconds(interval)
        maxDuration = try env.double("CALL_MAX_DURATION_SECONDS", default: 14_400)
        guard maxDuration >= 1, maxDuration <= 604_800 else {
            throw ConfigurationError("CALL_MAX_DURATION_SECONDS must be 1-604800 seconds")
        }
        let presenceCheck = try env.int("CALL_PRESENCE_CHECK_MS", default: 5000)
        guard (10...600_000).contains(presenceCheck) else { throw ConfigurationError("CALL_PRESENCE_CHECK_MS must be 10-600000") }
        presenceCheckInterval = .milliseconds(presenceCheck)
        turn = try TURNConfiguration(env: env)
    }
}

/// STUN and TURN servers. TURN credentials follow the TURN REST API scheme that coturn checks
/// with `use-auth-secret` / `static-auth-secret`: username `<unix expiry>:<user id>`, password
/// base64(HMAC-SHA1(secret, username)). The secret is never logged (see `description`).
public struct TURNConfiguration: Sendable, CustomStringConvertible {
    /// `STUN_SERVERS`: comma-separated STUN URLs (`stun:` is added when missing). Default: `stun:`
    /// on each TURN server when TURN is configured, else `stun:stun.l.google.com:19302` (the original's).
    public var stunServers: [String]
    /// `TURN_SERVER`: comma-separated `host:port` of the TURN servers, all sharing one secret. A
    /// `turn:` prefix and a `?transport=` suffix are tolerated and removed.
    public var turnServers: [String]
    /// `TURN_SECRET` (alias `TURN_PASSWORD`): coturn's `static-auth-secret`. Required when
    /// `TURN_SERVER` is set: there is no default secret.
    public var secret: String?
    /// `TURN_SECRET_PREVIOUS`: the secret being rotated out. Credentials are always minted with
    /// `TURN_SECRET`; coturn, which does the checking, must list both secrets during a rotation
    /// (docs/CALLS.md). Here it only serves `verify`.
    public var previousSecret: String?
    /// `TURN_REALM`: coturn's `realm`, reported to clients as `realm`. Default none.
    public var realm: String?
    /// `TURN_CREDENTIAL_TTL`: seconds a credential is valid. Default 300.
    public var credentialTTL: Int
    /// `TURNS_ENABLED`: also offer `turns:` (TURN over TLS) on `TURNS_PORT` (default 5349).
    /// The TURN host must then be a name that matches coturn's certificate.
    public var turnsEnabled: Bool
    public var turnsPort: Int

    public init(env: Environment = Environment()) throws {
        turnServers = try env.list("TURN_SERVER").map(Self.normaliseTURNServer)
        secret = env.string("TURN_SECRET") ?? env.string("TURN_PASSWORD")
        previousSecret = env.string("TURN_SECRET_PREVIOUS")
        realm = env.string("TURN_REALM")
        credentialTTL = try env.int("TURN_CREDENTIAL_TTL", default: 300)
        guard (10...86_400).contains(credentialTTL) else { throw ConfigurationError("TURN_CREDENTIAL_TTL must be 10-86400 seconds") }
        turnsEnabled = try env.bool("TURNS_ENABLED", default: false)
        turnsPort = try env.int("TURNS_PORT", default: 5349)
        guard (1...65535).contains(turnsPort) else { throw ConfigurationError("TURNS_PORT must be 1-65535") }
        if !turnServers.isEmpty {
            guard let secret else {
                throw ConfigurationError("TURN_SERVER is set but TURN_SECRET (or TURN_PASSWORD) is not: there is no default secret")
            }
            try Self.checkSecret(secret, name: "TURN_SECRET")
        }
        if let previousSecret {
            try Self.checkSecret(previousSecret, name: "TURN_SECRET_PREVIOUS")
            guard previousSecret != secret else { throw ConfigurationError("TURN_SECRET_PREVIOUS equals TURN_SECRET") }
        }
        let stun = env.list("STUN_SERVERS").map { $0.hasPrefix("stun:") || $0.hasPrefix("stuns:") ? $0 : "stun:\($0)" }
        if !stun.isEmpty {
            stunServers = stun
        } else if !turnServers.isEmpty {
            stunServers = turnServers.map { "stun:\($0)" }
        } else {
            stunServers = ["stun:stun.l.google.com:19302"]
        }
    }

    /// At least 16 bytes, no `CHANGE_ME…` placeholder, no well-known default (`Secrets`).
    static func checkSecret(_ s: String, name: String) throws {
        try Secrets.check(s, name: name, minBytes: 16)
    }

    /// `turn:host:3478?transport=udp` → `host:3478`; a bare host gets the default port 3478.
    static func normaliseTURNServer(_ raw: String) throws -> String {
        var s = Substring(raw)
        for scheme in ["turns:", "turn:"] where s.lowercased().hasPrefix(scheme) { s = s.dropFirst(scheme.count) }
        if let q = s.firstIndex(of: "?") { s = s[..<q] }
        let host: Substring, port: Substring?
        if s.hasPrefix("[") {  // [IPv6]:port
            guard let close = s.firstIndex(of: "]") else { throw ConfigurationError("TURN_SERVER entries must look like host:port") }
            host = s[...close]
            let rest = s[s.index(after: close)...]
            guard rest.isEmpty || rest.hasPrefix(":") else { throw ConfigurationError("TURN_SERVER entries must look like host:port") }
            port = rest.isEmpty ? nil : rest.dropFirst()
        } else {
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw ConfigurationError("TURN_SERVER entries must look like host:port") }
            host = parts[0]
            port = parts.count == 2 ? parts[1] : nil
        }
        guard !host.isEmpty, !host.contains("/"), !host.contains(" ") else {
            throw ConfigurationError("TURN_SERVER entries must look like host:port")
        }
        guard let port else { return "\(host):3478" }
        guard let p = Int(port), (1...65535).contains(p) else { throw ConfigurationError("TURN_SERVER port must be 1-65535") }
        return "\(host):\(p)"
    }

    public var description: String {
        "TURN(servers: \(turnServers), stun: \(stunServers), realm: \(realm ?? "-"), ttl: \(credentialTTL)s, "
            + "turns: \(turnsEnabled), secret: \(secret == nil ? "none" : "set"), previous secret: \(previousSecret == nil ? "none" : "set"))"
    }
}
