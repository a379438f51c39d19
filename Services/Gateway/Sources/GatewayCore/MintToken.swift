import AIIMConfiguration
import Foundation

/// `aiim-gateway mint-token`: a development command that signs a user token with `JWT_SECRET`.
public enum MintToken {
    public static func run(_ args: [String]) async -> Int32 {
        var user: String?, tenant = "default", ttl = 3600
        var i = 0
        while i < args.count {
            let v = i + 1 < args.count ? args[i + 1] : nil
            switch args[i] {
            case "--user": user = v; i += 2
            case "--tenant": tenant = v ?? tenant; i += 2
            case "--ttl": ttl = v.flatMap(Int.init) ?? ttl; i += 2
            default:
                FileHandle.standardError.write(Data("usage: aiim-gateway mint-token --user ID [--tenant ID] [--ttl SECONDS]\n".utf8))
                return 64
            }
        }
        guard let user, !user.isEmpty else {
            FileHandle.standardError.write(Data("mint-token: --user is required\n".utf8))
            return 64
        }
        let env = Environment()
        guard let secret = env.string("JWT_SECRET"), secret.utf8.count >= 32 else {
            FileHandle.standardError.write(Data("mint-token: JWT_SECRET (>= 32 bytes) must be set\n".utf8))
            return 78
        }
        let auth = await Authenticator(secret: secret, issuer: env.string("JWT_ISSUER"), defaultTenant: tenant)
        do {
            print(try await auth.mint(user: user, tenant: tenant, ttl: .seconds(ttl)))
            return 0
        } catch {
            FileHandle.standardError.write(Data("mint-token: \(error)\n".utf8))
            return 1
        }
    }
}
