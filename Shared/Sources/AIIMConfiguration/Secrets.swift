import Foundation

/// Refuses secrets nobody generated: empty or short values, the `CHANGE_ME…` placeholders of
/// `deploy/env/*.example`, and the well-known defaults of the servers AIIM talks to
/// (`minioadmin`, `postgres`, …). Every service checks each secret it reads with it, so a
/// half-filled env file stops the service (exit 78) instead of running with a guessable key.
/// Messages name the variable, never the value.
public enum Secrets {
    /// Values (compared case-insensitively, after removing `-` and `_`) that are somebody's
    /// default: MinIO's root pair, PostgreSQL's and Redis's usual ones, the original's TURN secret.
    static let wellKnown: Set<String> = [
        "minioadmin", "minio", "minio123", "admin", "administrator", "root", "password", "passwd",
        "postgres", "redis", "secret", "changeme", "changeit", "default", "defaultturnsecret",
        "test", "example", "placeholder", "aiimadmin", "aiim",
    ]

    /// True for a value that is a placeholder rather than a secret: it starts with `CHANGE_ME`
    /// / `changeme` (any case, `-` or `_`), or is a well-known default.
    public static func isPlaceholder(_ value: String) -> Bool {
        let folded = value.lowercased().filter { $0 != "-" && $0 != "_" }
        return folded.hasPrefix("changeme") || wellKnown.contains(folded)
    }

    /// Throws unless `value` is at least `minBytes` long and no placeholder. `name` is the
    /// variable the message names.
    public static func check(_ value: String, name: String, minBytes: Int) throws {
        guard isPlaceholder(value) == false else {
            throw ConfigurationError("\(name) is a placeholder or a well-known default; generate a random one (openssl rand -hex 32)")
        }
        guard value.utf8.count >= minBytes else {
            throw ConfigurationError("\(name) is too weak: it must be at least \(minBytes) bytes (got \(value.utf8.count))")
        }
    }

    /// Checks the password of a `scheme://[user][:password]@host…` URL (`REDIS_URL`,
    /// `DATABASE_URL`) when it has one; a URL without a password is left to the server to refuse.
    public static func checkURLPassword(_ url: String, name: String) throws {
        guard let password = urlPassword(url) else { return }
        guard isPlaceholder(password) == false else {
            throw ConfigurationError("\(name) has a placeholder or well-known default password; generate a random one (openssl rand -hex 32)")
        }
    }

    /// The percent-decoded password of a URL's userinfo, if any.
    static func urlPassword(_ url: String) -> String? {
        guard let scheme = url.range(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        guard let at = authority.lastIndex(of: "@") else { return nil }
        let userinfo = authority[..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return nil }
        let raw = String(userinfo[userinfo.index(after: colon)...])
        guard !raw.isEmpty else { return nil }
        return raw.removingPercentEncoding ?? raw
    }
}
