/// Exponential backoff with full jitter, for reconnects and retries.
public struct Backoff: Sendable {
    var current: Duration
    let base: Duration
    let cap: Duration

    public init(base: Duration = .milliseconds(100), cap: Duration = .seconds(5)) {
        self.base = base; self.cap = cap; current = base
    }

    public mutating func next() -> Duration {
        let d = current
        current = min(current * 2, cap)
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return .milliseconds(Int(Double.random(in: ms / 2...ms)))
    }

    public mutating func reset() { current = base }
}
