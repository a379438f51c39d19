/// Durations as the protocol counts them (deadlines and timeouts in milliseconds).
extension Duration {
    /// Whole milliseconds (rounded down), for protocols that count in them.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

extension ContinuousClock.Instant {
    /// Nanoseconds from this instant to now, for `Timer.recordNanoseconds`.
    public var elapsedNanoseconds: Int64 {
        let d = ContinuousClock.now - self
        return d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }
}
