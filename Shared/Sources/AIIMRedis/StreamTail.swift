import AIIMJSON
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Follows a stream from "now" with plain `XREAD BLOCK` (no consumer group): every reader sees
/// every entry. Used by a gateway for its own reply stream and for the shared events stream.
public final class StreamTail: Service, Sendable {
    let redis: RedisClient
    let stream: String
    let logger: Logger
    let onEntries: @Sendable ([StreamEntry]) async -> Void
    let block: Duration
    private let following = NIOLockedValueBox(false)

    /// True while `run()` follows the stream: every entry written from now on will be seen.
    public var isFollowing: Bool { following.withLockedValue { $0 } }

    public init(redis: RedisClient, stream: String, block: Duration = .milliseconds(1000), logger: Logger,
                onEntries: @escaping @Sendable ([StreamEntry]) async -> Void) {
        self.redis = redis; self.stream = stream; self.logger = logger; self.onEntries = onEntries
        self.block = block
    }

    public func run() async throws {
        let reader = redis.makeBlockingReader(block: block)
        // Start at the current time rather than `$`, so nothing written between start-up and the
        // first read is missed.
        var lastID = "\(Timestamp.nowMillis())-0"
        following.withLockedValue { $0 = true }
        defer { following.withLockedValue { $0 = false } }
        var backoff = Backoff()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let r = try await reader.command([
                    "XREAD", "COUNT", "1000", "BLOCK", String(reader.blockMillis), "STREAMS", stream, lastID,
                ])
                let entries = StreamEntry.parseRead(r)
                backoff.reset()
                if let last = entries.last {
                    lastID = last.id
                    await onEntries(entries)
                }
            } catch {
                logger.warning("stream tail read failed; retrying", metadata: ["stream": "\(stream)", "error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            }
        }
        await reader.shutdown()
    }
}
