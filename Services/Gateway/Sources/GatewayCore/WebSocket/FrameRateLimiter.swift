import NIOConcurrencyHelpers

/// The same per-user budget for WebSocket frames (`RATE_LIMIT_PER_SEC`), as a token bucket per
/// user in this gateway: a frame is one request. Counted locally, not in Redis, so a frame costs
/// no extra round trip; a user whose devices sit on several gateway replicas gets the budget
/// once per replica (docs/PROTOCOL.md). Bursts of up to twice the per-second budget pass.
final class FrameRateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let perSecond: Int
    private let buckets = NIOLockedValueBox<[String: Bucket]>([:])

    init(perSecond: Int) { self.perSecond = perSecond }

    /// Nil when the frame may proceed, else how long until one may.
    func admit(_ identity: Identity, now: ContinuousClock.Instant = .now) -> Duration? {
        admit(key: identity.tenantID + "\u{0}" + identity.userID, now: now)
    }

    /// The same for any budget key (e.g. one answer of one user).
    func admit(key: String, now: ContinuousClock.Instant = .now) -> Duration? {
        guard perSecond > 0 else { return nil }
        let rate = Double(perSecond), burst = 2 * Double(perSecond)
        return buckets.withLockedValue { all in
            if all.count > 100_000 { all = all.filter { now - $0.value.updated < .seconds(2) } }
            var b = all[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed = now - b.updated
            b.tokens = min(burst, b.tokens + rate * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
            b.updated = now
            defer { all[key] = b }
            guard b.tokens >= 1 else { return .milliseconds(Int64(((1 - b.tokens) / rate * 1000).rounded(.up))) }
            b.tokens -= 1
            return nil
        }
    }
}
