import AIIMProtocol
import Foundation
import JWTKit

/// Who is calling: the user (token `sub`) and tenant (token claim, never a request body).
public struct Identity: Sendable, Equatable {
    public var userID: String
    public var tenantID: String
    /// True for an AI agent authenticated with an API key.
    public var isBot: Bool

    public init(userID: String, tenantID: String, isBot: Bool) {
        self.userID = userID; self.tenantID = tenantID; self.isBot = isBot
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
        return Identity(userID: sub, tenantID: tenant, isBot: false)
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
