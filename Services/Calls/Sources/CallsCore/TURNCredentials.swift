import AIIMProtocol
import Crypto
import Foundation

/// A TURN REST API credential: what coturn's `use-auth-secret` accepts until `expiry`.
public struct TURNCredential: Sendable, Equatable {
    /// `<unix expiry>:<user id>`.
    public var username: String
    /// base64(HMAC-SHA1(secret, username)).
    public var password: String
    public var expiry: Int64
}

/// Mints TURN credentials and builds each user's `RTCConfiguration`. Stateless: coturn checks
/// the HMAC and the expiry itself, so nothing is stored.
public struct ICEConfigurationBuilder: Sendable {
    public let turn: TURNConfiguration

    public init(turn: TURNConfiguration) { self.turn = turn }

    /// A credential for `userID`, valid for `TURN_CREDENTIAL_TTL` seconds from `now`; nil when
    /// no TURN server is configured.
    public func credential(for userID: String, now: Date = Date()) -> TURNCredential? {
        guard !turn.turnServers.isEmpty, let secret = turn.secret else { return nil }
        let expiry = Int64(now.timeIntervalSince1970.rounded(.down)) + Int64(turn.credentialTTL)
        return Self.credential(userID: userID, expiry: expiry, secret: secret)
    }

    /// The TURN REST API formula.
    public static func credential(userID: String, expiry: Int64, secret: String) -> TURNCredential {
        let username = "\(expiry):\(userID)"
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Data(username.utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return TURNCredential(username: username, password: Data(mac).base64EncodedString(), expiry: expiry)
    }

    /// What coturn would decide for this username/password, accepting the current and the
    /// previous secret (diagnostics and tests; coturn does the real check).
    public func verify(username: String, password: String, now: Date = Date()) -> Bool {
        guard let colon = username.firstIndex(of: ":"), let expiry = Int64(username[..<colon]),
              expiry > Int64(now.timeIntervalSince1970) else { return false }
        let user = String(username[username.index(after: colon)...])
        return [turn.secret, turn.previousSecret].compactMap { $0 }.contains { secret in
            let expected = Self.credential(userID: user, expiry: expiry, secret: secret).password
            // Constant-time comparison of the two MACs.
            let a = Array(expected.utf8), b = Array(password.utf8)
            guard a.count == b.count else { return false }
            return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
        }
    }

    /// The `RTCConfiguration` for `userID`: STUN servers, then one entry per TURN server with
    /// `turn:` over UDP and TCP (and `turns:` when enabled) and credentials for this user only.
    public func configuration(for userID: String, now: Date = Date()) -> ICEConfiguration {
        var servers = turn.stunServers.map { ICEServer(urls: [$0]) }
        let credential = credential(for: userID, now: now)
        if let credential {
            for server in turn.turnServers {
                var urls = ["turn:\(server)?transport=udp", "turn:\(server)?transport=tcp"]
                if turn.turnsEnabled { urls.append("turns:\(Self.host(of: server)):\(turn.turnsPort)?transport=tcp") }
                servers.append(ICEServer(urls: urls, username: credential.username, credential: credential.password,
                                         credentialType: "password"))
            }
        }
        return ICEConfiguration(iceServers: servers, ttl: credential == nil ? nil : turn.credentialTTL,
                                realm: credential == nil ? nil : turn.realm)
    }

    /// `host:port` → `host` (`[v6]:port` → `[v6]`).
    static func host(of server: String) -> Substring {
        guard let colon = server.lastIndex(of: ":"), !server.hasSuffix("]") else { return server[...] }
        return server[..<colon]
    }
}
