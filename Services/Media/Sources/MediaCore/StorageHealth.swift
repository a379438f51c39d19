import AIIMProtocol
import AIIMS3
import Synchronization

/// Whether object storage answered the last probe. Requests fail fast with `storage_unavailable`
/// while it is down, instead of each waiting for its own connect timeouts.
final class StorageHealth: Sendable {
    enum State { case unknown, up, down }
    private let state = Mutex(State.unknown)

    var current: State { state.withLock { $0 } }

    func set(_ new: State) { state.withLock { $0 = new } }

    /// Throws `storage_unavailable` when the last probe failed.
    func require() throws {
        if current == .down { throw MediaErrors.storageUnavailable }
    }
}

enum MediaErrors {
    static let storageUnavailable = AIIMError(.storageUnavailable, "media storage is unavailable; try again later")
}

/// The `storage` readiness check: `HEAD` on the bucket with a client that gives up quickly (one
/// attempt, short timeouts), so a dead storage never delays the other readiness checks for long.
struct StorageProbe: Sendable {
    let client: S3Client
    let health: StorageHealth
    let bucket: String

    func check() async throws {
        let exists: Bool
        do {
            exists = try await client.headBucket()
        } catch {
            health.set(.down)
            throw AIIMError(.storageUnavailable, "storage unreachable")
        }
        guard exists else {
            health.set(.down)
            throw AIIMError(.storageUnavailable, "bucket \(bucket) does not exist yet")
        }
        health.set(.up)
    }
}
