import AIIMBackendKit
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import Foundation

/// API keys: service accounts for AI agents, stored as SHA-256 hashes. A key's id is its bot
/// user (`bot_<hex>`); its owner is the person who created it, who alone lists and revokes it.
extension MessagingService {
    /// Longest expiry a key may be created with (`expires_in_seconds`): ten years.
    static let maxAPIKeyLifetime = 315_360_000

    func verifyAPIKey(_ cmd: VerifyAPIKey) async throws -> VerifiedAPIKey {
        let rows = try await postgres.query("""
            SELECT user_id, tenant_id, expires_at FROM api_keys
            WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
            """, [cmd.keyHash])
        guard let r = rows.first else { throw AIIMError(.unauthorized, "invalid API key") }
        return VerifiedAPIKey(actor: Actor(userID: try r.decode("user_id"), tenantID: try r.decode("tenant_id"), isBot: true),
                              expiresAt: r.optional("expires_at"))
    }

    /// A human user creates a service account for an AI agent; the key acts as bot user
    /// `bot_<hex>` of the creator's tenant. The owner's live keys are counted under a
    /// per-owner advisory lock, so concurrent creates never pass `API_KEYS_PER_OWNER`.
    func createAPIKey(_ cmd: CreateAPIKey) async throws -> CreatedAPIKey {
        guard !cmd.actor.isBot else { throw AIIMError.forbidden("bots cannot create API keys") }
        let name = cmd.name.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= Validation.maxNameLength, !name.unicodeScalars.contains(where: { $0.value == 0 }) else {
            throw AIIMError.validation("name must be 1-200 characters (no NUL)")
        }
        guard cmd.keyHash.count == 64, cmd.keyHash.allSatisfy(\.isHexDigit) else { throw AIIMError.validation("bad key hash") }
        if let seconds = cmd.expiresInSeconds, !(1...Self.maxAPIKeyLifetime).contains(seconds) {
            throw AIIMError.validation("expires_in_seconds must be 1-\(Self.maxAPIKeyLifetime)")
        }
        let userID = "bot_" + UUIDs.make().replacingOccurrences(of: "-", with: "").prefix(20)
        let cap = apiKeysPerOwner
        let actor = cmd.actor
        let row = try await postgres.withTransaction { conn -> PostgresRow in
            try conn.query("SELECT pg_advisory_xact_lock(hashtextextended('api_keys:' || $1 || ':' || $2, 0))",
                           [actor.tenantID, actor.userID])
            let live: Int = try conn.query("""
                SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = $1 AND owner_id = $2
                AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
                """, [actor.tenantID, actor.userID]).rows[0].decode("n")
            guard live < cap else {
                throw AIIMError(.rateLimited, "you have \(live) live API keys, the most allowed (API_KEYS_PER_OWNER); revoke one first")
            }
            return try conn.query("""
                INSERT INTO api_keys (key_hash, tenant_id, user_id, name, owner_id, expires_at)
                VALUES ($1, $2, $3, $4, $5, CASE WHEN $6::int IS NULL THEN NULL ELSE now() + make_interval(secs => $6::int) END)
                RETURNING created_at, expires_at
                """, [cmd.keyHash, actor.tenantID, userID, name, actor.userID, cmd.expiresInSeconds]).rows[0]
        }
        return CreatedAPIKey(userID: userID, name: name, createdAt: row.optional("created_at"), expiresAt: row.optional("expires_at"))
    }

    /// The actor's own keys, newest first. Bots own no keys.
    func listAPIKeys(_ cmd: ListAPIKeys) async throws -> APIKeyList {
        guard !cmd.actor.isBot else { throw AIIMError.forbidden("bots have no API keys") }
        let rows = try await postgres.query("""
            SELECT user_id, name, created_at, expires_at, revoked_at FROM api_keys
            WHERE tenant_id = $1 AND owner_id = $2 ORDER BY created_at DESC, user_id LIMIT 1000
            """, [cmd.actor.tenantID, cmd.actor.userID])
        return APIKeyList(keys: try rows.rows.map(Self.apiKey))
    }

    /// Revokes one of the actor's keys and tells every gateway (the events stream), which
    /// forgets the key and closes its sockets. A key of somebody else is `not_found`, exactly
    /// like a key that does not exist. Revoking again answers the key and tells the gateways again.
    func revokeAPIKey(_ cmd: RevokeAPIKey) async throws -> APIKeyDTO {
        guard !cmd.actor.isBot else { throw AIIMError.forbidden("bots cannot revoke API keys") }
        let keyID = try Validation.id(cmd.keyID, field: "key_id")
        let rows = try await postgres.query("""
            UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
            WHERE tenant_id = $1 AND owner_id = $2 AND user_id = $3
            RETURNING key_hash, user_id, name, created_at, expires_at, revoked_at
            """, [cmd.actor.tenantID, cmd.actor.userID, keyID])
        guard let row = rows.first else { throw AIIMError.notFound("API key not found") }
        let key = try Self.apiKey(row)
        var event = DeliveryEvent(tenantID: cmd.actor.tenantID, recipients: [key.keyID],
                                  frame: .object(["type": .string("api_key.revoked"), "key_id": .string(key.keyID)]))
        event.revokedKey = try row.decode("key_hash")
        try await runtime.publish(event)
        return key
    }

    static func apiKey(_ row: PostgresRow) throws -> APIKeyDTO {
        APIKeyDTO(keyID: try row.decode("user_id"), name: try row.decode("name"), createdAt: try row.decode("created_at"),
                  expiresAt: row.optional("expires_at"), revokedAt: row.optional("revoked_at"))
    }
}
