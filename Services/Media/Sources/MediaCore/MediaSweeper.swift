import AIIMRedis
import AIIMS3
import AIIMServiceKit
import Logging
import Metrics
import ServiceLifecycle

/// Creates the bucket at start if it is missing (retrying with backoff while storage is down, never
/// crashing), then sweeps expired pending uploads every `interval`: their objects first, then
/// their rows. Safe with several replicas (rows are claimed with `FOR UPDATE SKIP LOCKED`).
struct MediaSweeper: Service {
    let storage: S3Client
    let store: MediaStore
    let readiness: Readiness
    let health: StorageHealth
    let interval: Duration
    let batch: Int
    let logger: Logger
    /// How long a claim keeps other replicas off a row; a crashed sweeper's rows come back after it.
    static let lease = Duration.seconds(120)

    func run() async throws {
        // Only sleeps and idempotent sweeps to interrupt: stop at once on shutdown. The loop
        // returns rather than throws: a service that throws (even CancellationError) would make
        // the ServiceGroup cancel every other service instead of draining them.
        await cancelWhenGracefulShutdown { await loop() }
    }

    private func loop() async {
        await ensureBucket()
        while !Task.isCancelled {
            if readiness.isUp("migrations"), health.current != .down {
                do {
                    _ = try await sweep()
                } catch {
                    logger.warning("sweeping expired uploads failed", metadata: ["media.error": "\(error)"])
                }
            }
            try? await Task.sleep(for: interval)
        }
    }

    func ensureBucket() async {
        var backoff = Backoff(base: .milliseconds(200), cap: .seconds(30))
        while !Task.isCancelled {
            do {
                if try await storage.headBucket() { return }
                try await storage.createBucket()
                logger.notice("created the media bucket", metadata: ["media.bucket": "\(storage.configuration.bucket)"])
                return
            } catch {
                logger.warning("cannot reach storage to ensure the bucket; retrying", metadata: ["media.error": "\(error)"])
                try? await Task.sleep(for: backoff.next())
            }
        }
    }

    /// One pass; returns how many expired uploads it removed.
    @discardableResult
    func sweep() async throws -> Int {
        var removed = 0
        while !Task.isCancelled {
            let claimed = try await store.claimExpired(limit: batch, lease: Self.lease)
            var gone: [String] = []
            for item in claimed {
                do {
                    try await storage.deleteObject(item.objectKey, logger: logger)
                    gone.append(item.mediaID)
                } catch {
                    // The claim lapses after the lease and a later pass retries.
                    logger.warning("cannot delete an expired upload's object", metadata: [
                        "media.id": "\(item.mediaID)", "media.error": "\(error)",
                    ])
                }
            }
            try await store.removeSwept(gone)
            Counter(label: "aiim_media_swept_total").increment(by: gone.count)
            removed += gone.count
            if !gone.isEmpty {
                logger.info("swept expired uploads", metadata: ["media.count": "\(gone.count)"])
            }
            if claimed.count < batch || gone.count < claimed.count { break }
        }
        return removed
    }
}
