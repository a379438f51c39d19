import AIIMPostgres
import AIIMProtocol
import Foundation

/// API keys: service accounts for AI agents, stored as SHA-256 hashes.
extension MessagingService {
    func verifyAPIKey(_ cmd: VerifyAPIKey) async throws -> Actor {
        let rows = try await postgres.query(
            "SELECT user_id, tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", [cmd.keyHash])
        guard let r = rows.first else { throw AIIMError(.unauthorized, "invalid API key") }
        return Actor(userID: try r.decode("user_id"), tenantID: try r.decode("tenant_id"), isBot: true)
    }

    /// A human user creates a service account for an AI agent; the key acts as bot user
    /// `bot_<hex>` of the creator's tenant.
    func createAPIKey(_ cmd: CreateAPIKey) async throws -> CreatedAPIKey {
        guard !cmd.actor.isBot else { throw AIIMError.forbidden("bots cannot create API keys") }
        let name = cmd.name.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, name.count <= Validation.maxNameLength else { throw AIIMError.validation("name must be 1-200 characters") }
        guard cmd.keyHash.count == 64, cmd.keyHash.allSatisfy(\.isHexDigit) else { throw AIIMError.validation("bad key hash") }
        let userID = "bot_" + UUIDs.make().replacingOccurrences(of: "-", with: "").prefix(20)
        try await postgres.query(
            "INSERT INTO api_keys (key_hash, tenant_id, user_id, name) VALUES ($1, $2, $3, $4)",
            [cmd.keyHash, cmd.actor.tenantID, userID, name])
        return CreatedAPIKey(userID: userID, name: name)
    }
}
