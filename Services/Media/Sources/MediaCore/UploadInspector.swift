import Foundation
import Crypto
import Synchronization

/// What one pass over an uploaded object found.
struct UploadInspection: Sendable {
    /// Lower-case hex SHA-256 of every byte.
    var sha256: String
    var size: Int64
    /// The format the first bytes show, if AIIM knows it.
    var format: SniffedFormat?
    var durationMs: Int?
}

/// The object is larger than it may be; the transfer is stopped.
struct UploadTooLarge: Error {}

/// Hashes, sniffs and measures an object in one streamed pass: memory stays flat whatever its size
/// (the largest buffer is a format header, at most `DurationReader.maxRead` bytes).
struct UploadInspector: Sendable {
    private var hasher = SHA256()
    private var prefix: [UInt8] = []
    private var format: SniffedFormat?
    private var reader: DurationReader?
    private var started = false
    private var size: Int64 = 0
    /// Bytes after which the transfer is aborted (`UploadTooLarge`).
    let limit: Int64

    init(limit: Int64) {
        self.limit = limit
    }

    mutating func consume(_ chunk: UnsafeRawBufferPointer) throws {
        size += Int64(chunk.count)
        guard size <= limit else { throw UploadTooLarge() }
        hasher.update(bufferPointer: chunk)
        guard started else {
            let take = min(SniffedFormat.prefixLength - prefix.count, chunk.count)
            prefix.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<take]))
            if prefix.count == SniffedFormat.prefixLength {
                start()
                reader?.feed(UnsafeRawBufferPointer(rebasing: chunk[take...]))
            }
            return
        }
        reader?.feed(chunk)
    }

    /// Chooses the duration parser from the sniffed prefix and replays the prefix into it.
    private mutating func start() {
        started = true
        format = SniffedFormat.sniff(prefix)
        reader = DurationReader.forFormat(format, prefix: prefix)
        reader?.feed(prefix)
    }

    mutating func finish() -> UploadInspection {
        if !started { start() }
        return UploadInspection(
            sha256: hasher.finalize().map { String(format: "%02x", $0) }.joined(),
            size: size, format: format, durationMs: reader?.durationMilliseconds(totalBytes: size))
    }
}

/// `UploadInspector` behind a lock, so the storage client's `@Sendable` chunk callback (run on
/// one storage thread at a time) can feed it and the caller can read it once the transfer ended.
final class SharedUploadInspector: Sendable {
    private let state: Mutex<UploadInspector>

    init(limit: Int64) {
        state = Mutex(UploadInspector(limit: limit))
    }

    func consume(_ chunk: UnsafeRawBufferPointer) throws {
        try state.withLock { try $0.consume(chunk) }
    }

    func finish() -> UploadInspection {
        state.withLock { $0.finish() }
    }
}
