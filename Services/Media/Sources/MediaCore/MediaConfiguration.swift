import AIIMConfiguration
import AIIMProtocol
import AIIMS3

/// Media settings, from the environment. The `MEDIA_*` names are the original's; the storage
/// settings are the `MINIO_*` variables documented on `S3Configuration`.
public struct MediaConfiguration: Sendable {
    /// `MINIO_ENDPOINT`, `MINIO_ACCESS_KEY`, `MINIO_SECRET_KEY`, `MINIO_BUCKET_NAME` (required),
    /// `MINIO_SECURE`, `MINIO_REGION`, `MINIO_ADDRESSING` (`path` or `virtual`, which Alibaba OSS needs).
    public var storage: S3Configuration
    /// `MEDIA_MAX_FILE_SIZE`: largest upload in bytes. Default 52428800 (50 MiB). Unlike the
    /// original, a larger value really raises the limit.
    public var maxFileSize: Int64
    /// `MEDIA_ALLOWED_TYPES`: comma-separated MIME types clients may upload. Aliases count as their
    /// canonical type (`audio/x-wav` is `audio/wav`). Default: the original's audio types plus
    /// common image types.
    public var allowedTypes: Set<String>
    /// `MEDIA_URL_EXPIRE_SECONDS`: lifetime of upload and download URLs (1...604800). Default 3600.
    public var urlExpiry: Duration
    /// `MEDIA_UPLOAD_GRACE_SECONDS`: how long after its upload URL expired a pending upload may
    /// still be completed (an upload that started in time may finish late); after that it is
    /// swept with its object. Default 600.
    public var uploadGrace: Duration
    /// `MEDIA_CLEANUP_INTERVAL_SECONDS`: how often each replica sweeps expired pending uploads. Default 60.
    public var cleanupInterval: Duration
    /// `MEDIA_CLEANUP_BATCH`: pending uploads one sweep claims at a time. Default 100.
    public var cleanupBatch: Int
    /// `MEDIA_STORAGE_THREADS`: threads (and so concurrent storage transfers) of this replica. Default 8.
    public var storageThreads: Int

    public static let defaultAllowedTypes = [
        "audio/mpeg", "audio/wav", "audio/ogg", "audio/mp4", "audio/webm", "audio/aac",
        "image/jpeg", "image/png", "image/gif", "image/webp",
    ]

    public init(env: Environment = Environment()) throws {
        do {
            var storage = try S3Configuration(environment: env.values)
            // Short connect bound and one retry: a request must fail (storage_unavailable) well
            // within the gateway's bus timeout when storage is down.
            storage.connectTimeout = .seconds(2)
            storage.requestTimeout = .seconds(10)
            storage.retry = .init(maxAttempts: 2, initialBackoff: .milliseconds(100), maxBackoff: .milliseconds(500))
            self.storage = storage
        } catch let error as S3Error {
            throw ConfigurationError("storage configuration: \(error.logDetail)")
        }
        // MinIO's own minimums (3 / 8 characters); placeholders and `minioadmin` are refused.
        try Secrets.check(storage.accessKey, name: "MINIO_ACCESS_KEY", minBytes: 3)
        try Secrets.check(storage.secretKey, name: "MINIO_SECRET_KEY", minBytes: 8)
        maxFileSize = Int64(try env.int("MEDIA_MAX_FILE_SIZE", default: 52_428_800))
        guard maxFileSize > 0 else { throw ConfigurationError("MEDIA_MAX_FILE_SIZE must be a positive number of bytes") }
        let listed = env.list("MEDIA_ALLOWED_TYPES")
        var allowed: Set<String> = []
        for entry in listed.isEmpty ? Self.defaultAllowedTypes : listed {
            guard let valid = try? MediaValidation.contentType(entry) else {
                throw ConfigurationError("MEDIA_ALLOWED_TYPES: '\(entry)' is not a MIME type")
            }
            allowed.insert(MediaTypes.canonical(valid))
        }
        allowedTypes = allowed
        let expiry = try env.int("MEDIA_URL_EXPIRE_SECONDS", default: 3600)
        guard (1...604_800).contains(expiry) else {
            throw ConfigurationError("MEDIA_URL_EXPIRE_SECONDS must be 1...604800 (S3's limit for presigned URLs)")
        }
        urlExpiry = .seconds(expiry)
        let grace = try env.int("MEDIA_UPLOAD_GRACE_SECONDS", default: 600)
        guard grace >= 0 else { throw ConfigurationError("MEDIA_UPLOAD_GRACE_SECONDS must not be negative") }
        uploadGrace = .seconds(grace)
        let interval = try env.double("MEDIA_CLEANUP_INTERVAL_SECONDS", default: 60)
        guard interval > 0 else { throw ConfigurationError("MEDIA_CLEANUP_INTERVAL_SECONDS must be positive") }
        cleanupInterval = .milliseconds(Int(interval * 1000))
        cleanupBatch = try env.int("MEDIA_CLEANUP_BATCH", default: 100)
        guard cleanupBatch > 0 else { throw ConfigurationError("MEDIA_CLEANUP_BATCH must be positive") }
        storageThreads = try env.int("MEDIA_STORAGE_THREADS", default: 8)
        guard (1...256).contains(storageThreads) else { throw ConfigurationError("MEDIA_STORAGE_THREADS must be 1...256") }
    }
}

extension Duration {
    /// Whole seconds, as SQL interval parameters take them.
    var wholeSeconds: Int64 { components.seconds }
}
