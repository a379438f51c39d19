import AIIMProtocol
import Crypto
import Foundation
import JWTKit
import NIOConcurrencyHelpers

/// Who is calling: the user (token `sub`) and tenant (token claim, never a request body).
public struct Identity: Sendable, Equatable {
    public var userID: String
    public var tenantID: String
    /// True for an AI agent authenticated with an API key.
    public var isBot: Bool
    /// When the credential stops being valid (a JWT's `exp`, an API key's `expires_at`); nil
    /// for API keys without expiry. A WebSocket opened with it is closed then (4002).
    public var expiresAt: Date?

    public init(userID: String, tenantID: String, isBot: Bool, expiresAt: Date? = nil) {
        self.userID = userID; self.tenantID = tenantID; self.isBot = isBot; self.expiresAt = expiresAt
    }

    /// The bus-level actor for this identity (optionally on one WebSocket connection).
    public func actor(connectionID: String? = nil) -> Actor {
        Actor(userID: userID, tenantID: tenantID, connectionID: connectionID, isBot: isBot)
    }
}

/// Claims of an AIIM user token. `exp` is required; `tenant_id` names the tenant.
struct UserClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var iat: IssuedAtClaim?
    var iss: IssuerClaim?
    var tenant_id: String?

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
    }
}

/// Verifies and mints HS256 tokens. The algorithm is pinned: only the configured HMAC key
/// verifies, so `alg: none` or RS/HS confusion cannot pass.
public struct Authenticator: Sendable {
    let keys: JWTKeyCollection
    let issuer: String?
    let defaultTenant: String

    public init(secret: String, issuer: String?, defaultTenant: String) async {
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: Array(secret.utf8)), digestAlgorithm: .sha256)
        self.issuer = issuer
        self.defaultTenant = defaultTenant
    }

    /// The identity in a token, or `unauthorized`.
    public func verify(_ token: String) async throws -> Identity {
        guard token.utf8.count < 8192 else { throw AIIMError(.unauthorized, "invalid token") }
        let claims: UserClaims
        do { claims = try await keys.verify(token, as: UserClaims.self) } catch {
            throw AIIMError(.unauthorized, "invalid token")
        }
        if let issuer, claims.iss?.value != issuer { throw AIIMError(.unauthorized, "invalid token") }
        let sub = claims.sub.value
        guard !sub.isEmpty, sub.utf8.count <= 128 else { throw AIIMError(.unauthorized, "invalid token") }
        let tenant = claims.tenant_id ?? defaultTenant
        guard !tenant.isEmpty, tenant.utf8.count <= 128 else { throw AIIMError(.unauthorized, "invalid token") }
        return Identity(userID: sub, tenantID: tenant, isBot: false, expiresAt: claims.exp.value)
    }

    /// A token for development and tests (`aiim-gateway mint-token`).
    public func mint(user: String, tenant: String, ttl: Duration) async throws -> String {
        let now = Date()
        let claims = UserClaims(
            sub: .init(value: user), exp: .init(value: now.addingTimeInterval(Double(ttl.components.seconds))),
            iat: .init(value: now), iss: issuer.map { .init(value: $0) }, tenant_id: tenant)
        return try await keys.sign(claims)
    }
}

/// Turns a bearer token into an identity: a user token (JWT, verified here) or an AI agent's API
/// key (`aiim_…`, verified by messaging and cached for a minute, or until the key's revocation
/// event or its expiry, whichever comes first).
public struct Credentials: Sendable {
    let tokens: Authenticator
    let backends: Backends
    private let apiKeyCache = NIOLockedValueBox<[String: (Identity, ContinuousClock.Instant)]>([:])

    init(tokens: Authenticator, backends: Backends) {
        self.tokens = tokens
        self.backends = backends
    }

    /// The identity a token stands for, or `unauthorized`.
    public func identity(for token: String) async throws -> Identity {
        guard token.hasPrefix(APIKeys.prefix) else { return try await tokens.verify(token) }
        let hash = APIKeys.hash(token)
        if let (identity, at) = apiKeyCache.withLockedValue({ $0[hash] }), ContinuousClock.now - at < .seconds(60),
           identity.expiresAt.map({ $0 > Date() }) ?? true {
            return identity
        }
        let verified = try await backends.call(VerifyAPIKey(keyHash: hash))
        let identity = Identity(userID: verified.actor.userID, tenantID: verified.actor.tenantID, isBot: true,
                                expiresAt: verified.expiresAt)
        apiKeyCache.withLockedValue { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[hash] = (identity, .now)
        }
        return identity
    }

    /// A key was revoked (the revocation event reached this gateway): it is checked afresh
    /// next time, and refused.
    func forget(apiKeyHash hash: String) {
        _ = apiKeyCache.withLockedValue { $0.removeValue(forKey: hash) }
    }
}

/// API keys of AI agents: `aiim_` and 96 hex digits, shown once; only the SHA-256 is stored.
enum APIKeys {
    static let prefix = "aiim_"

    static func make() -> String {
        prefix + (0..<3).map { _ in UUIDs.make().replacingOccurrences(of: "-", with: "") }.joined()
    }

    static func hash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
