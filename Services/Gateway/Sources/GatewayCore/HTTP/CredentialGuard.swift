import AIIMProtocol
import Crypto
import Foundation
import HTTPTypes
import Metrics
import NIOConcurrencyHelpers
import NIOCore

/// Guards credential checks against unauthenticated floods, before they cost anything: a client
/// address that caused more than `AUTH_FAILURES_PER_SEC` failed checks (bursts of 4x) gets
/// `rate_limited` (429) for every request carrying a credential until its budget refills, with no
/// JWT verified and no bus call made; and a credential that just failed is refused again from
/// memory for `failureTTL` (a repeated bad API key costs messaging nothing). Counted per gateway
/// replica, in memory: a failure must not cost a Redis round trip either.
final class CredentialGuard: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let credentials: Credentials
    let perSecond: Int
    let proxies: TrustedProxies
    /// How long a failed credential is refused from memory.
    static let failureTTL: Duration = .seconds(30)
    static let maxEntries = 100_000
    private let buckets = NIOLockedValueBox<[String: Bucket]>([:])
    private let failures = NIOLockedValueBox<[String: ContinuousClock.Instant]>([:])

    init(credentials: Credentials, perSecond: Int, trustedProxies: TrustedProxies) {
        self.credentials = credentials
        self.perSecond = perSecond
        proxies = trustedProxies
    }

    /// The identity `token` stands for, or `unauthorized`; `rate_limited` while `client` is over
    /// its failure budget.
    func identity(for token: String, client: String) async throws -> Identity {
        let now = ContinuousClock.now
        if let wait = overBudget(client, now: now) {
            Counter(label: "aiim_auth_refused_total", dimensions: [("reason", "rate_limited")]).increment()
            throw AIIMError(.rateLimited, "too many failed authentication attempts; retry in \(max(1, wait.components.seconds)) s")
        }
        let key = Self.fingerprint(token)
        if let at = failures.withLockedValue({ $0[key] }), now - at < Self.failureTTL {
            spend(client, now: now)
            Counter(label: "aiim_auth_refused_total", dimensions: [("reason", "cached_failure")]).increment()
            throw AIIMError(.unauthorized, "invalid token")
        }
        do {
            return try await credentials.identity(for: token)
        } catch let e as AIIMError where e.code == .unauthorized {
            // Only a definite "no" is remembered; a timeout or an unavailable backend is not.
            failures.withLockedValue { all in
                if all.count >= Self.maxEntries { all = all.filter { now - $0.value < Self.failureTTL } }
                if all.count >= Self.maxEntries { all.removeAll() }
                all[key] = now
            }
            spend(client, now: now)
            Counter(label: "aiim_auth_refused_total", dimensions: [("reason", "invalid")]).increment()
            throw e
        }
    }

    /// The client address of a request: the peer, or, when the peer is a trusted proxy, the
    /// right-most `X-Forwarded-For` entry that is not a trusted proxy itself.
    func clientAddress(peer: SocketAddress?, headers: HTTPFields) -> String {
        proxies.client(peer: peer, forwardedFor: headers[values: .xForwardedFor])
    }

    var rate: Double { Double(perSecond) }
    var burst: Double { 4 * Double(perSecond) }

    /// How long until `client` may try again, when it has no failure left in its budget.
    private func overBudget(_ client: String, now: ContinuousClock.Instant) -> Duration? {
        guard perSecond > 0 else { return nil }
        return buckets.withLockedValue { all -> Duration? in
            guard var b = all[client] else { return nil }
            refill(&b, now: now)
            all[client] = b
            guard b.tokens < 1 else { return nil }
            return .milliseconds(Int64(((1 - b.tokens) / rate * 1000).rounded(.up)))
        }
    }

    private func spend(_ client: String, now: ContinuousClock.Instant) {
        guard perSecond > 0 else { return }
        buckets.withLockedValue { all in
            if all.count >= Self.maxEntries {
                // Full buckets carry no information: forget them first.
                all = all.filter { var b = $0.value; refill(&b, now: now); return b.tokens < burst }
                if all.count >= Self.maxEntries { all.removeAll() }
            }
            var b = all[client] ?? Bucket(tokens: burst, updated: now)
            refill(&b, now: now)
            b.tokens = max(0, b.tokens - 1)
            all[client] = b
        }
    }

    private func refill(_ b: inout Bucket, now: ContinuousClock.Instant) {
        let elapsed = now - b.updated
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        b.tokens = min(burst, b.tokens + rate * seconds)
        b.updated = now
    }

    /// A credential as a map key: its SHA-256, so no credential is kept in memory.
    static func fingerprint(_ token: String) -> String {
        SHA256.hash(data: Data(token.utf8)).withUnsafeBytes { Data($0).base64EncodedString() }
    }
}

/// `TRUSTED_PROXIES`: the reverse proxies (addresses or CIDR ranges, IPv4 or IPv6) whose
/// `X-Forwarded-For` header is believed. Empty by default: nobody's is.
struct TrustedProxies: Sendable {
    struct Range: Sendable {
        var bytes: [UInt8]
        var prefix: Int

        func contains(_ address: [UInt8]) -> Bool {
            guard address.count == bytes.count else { return false }
            var bits = prefix
            for i in 0..<bytes.count where bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xFF : ~(0xFF >> UInt8(bits))
                if address[i] & mask != bytes[i] & mask { return false }
                bits -= 8
            }
            return true
        }
    }

    let ranges: [Range]

    init(_ entries: [String]) throws {
        ranges = try entries.map { entry in
            let parts = entry.split(separator: "/", maxSplits: 1).map(String.init)
            guard let bytes = Self.parse(parts[0]) else { throw ConfigurationProblem("'\(entry)' is not an IP address or CIDR range") }
            let prefix = parts.count == 2 ? Int(parts[1]) : bytes.count * 8
            guard let prefix, prefix >= 0, prefix <= bytes.count * 8 else { throw ConfigurationProblem("'\(entry)' has a bad prefix length") }
            return Range(bytes: bytes, prefix: prefix)
        }
    }

    struct ConfigurationProblem: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    func trusts(_ address: String) -> Bool {
        guard !ranges.isEmpty, let bytes = Self.parse(address) else { return false }
        return ranges.contains { $0.contains(bytes) }
    }

    /// The client behind `peer`: the peer itself unless it is trusted, then the right-most
    /// forwarded address that is not trusted (a client can prepend anything to the header, so
    /// only what trusted proxies appended counts).
    func client(peer: SocketAddress?, forwardedFor: [String]) -> String {
        let peerAddress = peer?.ipAddress ?? "unknown"
        guard trusts(peerAddress) else { return peerAddress }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        var client = peerAddress
        for hop in hops.reversed() {
            guard Self.parse(hop) != nil else { break }  // garbage: stop at the last address we can trust
            client = hop
            if !trusts(hop) { break }
        }
        return client
    }

    /// The bytes of an IPv4 or IPv6 address in text form, or nil.
    static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            let bytes = withUnsafeBytes(of: &v6) { Array($0) }
            // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is that IPv4 address.
            if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF { return Array(bytes[12...]) }
            return bytes
        }
        return nil
    }
}

extension HTTPField.Name {
    static let xForwardedFor = Self("X-Forwarded-For")!
}
