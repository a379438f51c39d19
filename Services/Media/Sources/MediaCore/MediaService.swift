import AIIMBackendKit
import AIIMConfiguration
import AIIMPostgres
import AIIMProtocol
import AIIMS3
import AIIMServiceKit
import Foundation
import Logging
import Metrics
import NIOPosix
import Prometheus
import ServiceLifecycle

/// The media service: consumes `aiim:cmd:media`. Uploads and downloads go straight between clients
/// and S3 through presigned URLs; this service issues them, verifies uploads (size, SHA-256, real
/// type, duration) in one streamed pass, enforces membership and ownership, and sweeps uploads
/// that were never completed. It owns the `media` table; other services ask it (`media.attachment`)
/// and it checks membership through messaging's `messaging_members` view.
public struct MediaService: BackendService {
    public static let name = ServiceName.media
    public static let readinessComponents = ["storage"]
    public static func migrations() throws -> [Migration] { try Migrator.bundled(in: .module) }

    public let runtime: BackendRuntime
    public let configuration: MediaConfiguration
    /// The bucket, for the service's own transfers and presigning.
    public let storage: S3Client
    let probe: StorageProbe
    let storageThreads: NIOThreadPool
    let store: MediaStore
    let health: StorageHealth
    let sweeper: MediaSweeper

    init(runtime: BackendRuntime, configuration: MediaConfiguration) {
        self.runtime = runtime
        self.configuration = configuration
        storageThreads = NIOThreadPool(numberOfThreads: configuration.storageThreads)
        storageThreads.start()
        var logger = runtime.logger
        logger[metadataKey: "media.bucket"] = "\(configuration.storage.bucket)"
        storage = S3Client(configuration: configuration.storage, threadPool: storageThreads, logger: logger)
        var probeConfiguration = configuration.storage
        probeConfiguration.connectTimeout = .seconds(1)
        probeConfiguration.requestTimeout = .seconds(2)
        probeConfiguration.retry = .init(maxAttempts: 1)
        health = StorageHealth()
        probe = StorageProbe(client: S3Client(configuration: probeConfiguration, threadPool: storageThreads, logger: logger),
                             health: health, bucket: configuration.storage.bucket)
        store = MediaStore(db: runtime.postgres, grace: configuration.uploadGrace)
        sweeper = MediaSweeper(storage: storage, store: store, readiness: runtime.readiness, health: health,
                               interval: configuration.cleanupInterval, batch: configuration.cleanupBatch, logger: logger)
    }

    /// Reads the media settings (`MediaConfiguration`) from `env`. Refuses a missing or malformed
    /// setting; never because storage is down.
    public init(runtime: BackendRuntime, env: Environment) throws {
        self.init(runtime: runtime, configuration: try MediaConfiguration(env: env))
    }

    public var extraServices: [any Service] { [sweeper] }
    public var readinessChecks: [(String, DependencyMonitor.Check)] { [("storage", { [probe] in try await probe.check() })] }

    public func routes(_ router: inout CommandRouter) throws {
        try router.register(MediaUploadToken.self, uploadToken)
        try router.register(MediaUploadComplete.self, uploadComplete)
        try router.register(MediaDownload.self, download)
        try router.register(MediaMetadata.self, metadata)
        try router.register(MediaDelete.self, delete)
        try router.register(MediaAttachment.self, attachment)
    }

    /// Closes storage connections and threads, then the runtime's pools.
    public func shutdown() async {
        storage.shutdown()
        probe.client.shutdown()
        try? await storageThreads.shutdownGracefully()
        await runtime.shutdown()
    }

    /// Runs one sweep of expired pending uploads now (tests and operators; replicas also do it every
    /// `MEDIA_CLEANUP_INTERVAL_SECONDS`). Returns how many it removed.
    @discardableResult
    public func sweepExpiredUploads() async throws -> Int {
        try await sweeper.sweep()
    }

    private func logger(_ operation: String, mediaID: String? = nil, actor: Actor) -> Logger {
        var logger = runtime.logger
        logger[metadataKey: "media.operation"] = "\(operation)"
        logger[metadataKey: "media.user"] = "\(actor.userID)"
        if let mediaID { logger[metadataKey: "media.id"] = "\(mediaID)" }
        return logger
    }

    // MARK: upload_token

    func uploadToken(_ command: MediaUploadToken) async throws -> MediaUploadTicket {
        let conversationID = try MediaValidation.conversationID(command.conversationID)
        let filename = try MediaValidation.filename(command.filename)
        let contentType = try MediaValidation.contentType(command.contentType)
        let size = try MediaValidation.fileSize(command.fileSize)
        let canonical = MediaTypes.canonical(contentType)
        guard configuration.allowedTypes.contains(canonical) else {
            throw AIIMError(.unsupportedMediaType, "content type \(MediaTypes.essence(contentType)) is not allowed")
        }
        guard MediaTypes.extensionFits(filename, canonicalType: canonical) else {
            throw AIIMError(.unsupportedMediaType,
                            "file extension .\(MediaTypes.fileExtension(filename) ?? "") does not match content type \(canonical)")
        }
        guard size <= configuration.maxFileSize else {
            throw AIIMError(.payloadTooLarge, "file_size is larger than the limit of \(configuration.maxFileSize) bytes")
        }
        try health.require()
        let mediaID = MediaIDs.make()
        let objectKey = MediaIDs.objectKey(conversationID: conversationID, mediaID: mediaID)
        let now = Date()
        let presigned: S3PresignedRequest
        do {
            presigned = try storage.presignedURL(
                method: .put, key: objectKey, expires: configuration.urlExpiry,
                signedHeaders: ["content-type": contentType, "content-length": String(size)], date: now)
        } catch {
            throw storageFailure(error, logger("upload_token", mediaID: mediaID, actor: command.actor))
        }
        guard try await store.insertPending(
            mediaID: mediaID, actor: command.actor, conversationID: conversationID, contentType: contentType,
            size: size, filename: filename, objectKey: objectKey, expiresAt: presigned.expiresAt)
        else { throw AIIMError.forbidden() }
        logger("upload_token", mediaID: mediaID, actor: command.actor)
            .info("upload token issued", metadata: ["media.type": "\(contentType)", "media.size": "\(size)"])
        return MediaUploadTicket(mediaID: mediaID, uploadURL: presigned.url, expiresAt: presigned.expiresAt,
                                 method: "PUT", headers: ["Content-Type": contentType])
    }

    // MARK: upload_complete

    func uploadComplete(_ command: MediaUploadComplete) async throws -> MediaUploadResult {
        let mediaID = try MediaValidation.mediaID(command.mediaID)
        let conversationID = try MediaValidation.conversationID(command.conversationID)
        let fileHash = try MediaValidation.fileHash(command.fileHash)
        let fileSize = try MediaValidation.fileSize(command.fileSize)
        let log = logger("upload_complete", mediaID: mediaID, actor: command.actor)
        let media = try await visibleMedia(command.actor, conversationID: conversationID, mediaID: mediaID)
        if media.isReady {
            // A retried complete (e.g. after a gateway timeout) gets the same answer.
            guard media.sha256 == fileHash, media.size == fileSize else {
                throw AIIMError.conflict("this media was already completed with other content")
            }
            return Self.result(media)
        }
        guard media.uploaderID == command.actor.userID else {
            throw AIIMError.forbidden("only the uploader can complete this upload")
        }
        if media.expired {
            await discard(media, log, reason: "expired")
            throw AIIMError(.invalidState, "the upload token has expired; request a new one")
        }
        guard fileSize == media.size else {
            await discard(media, log, reason: "size_mismatch")
            throw AIIMError.validation("file_size does not match the size declared for the upload token")
        }
        try health.require()

        let stored: S3ObjectInfo?
        do { stored = try await storage.headObject(media.objectKey, logger: log) } catch { throw storageFailure(error, log) }
        guard let stored else {
            throw AIIMError.notFound("no file was uploaded for this media_id; upload it to upload_url first")
        }
        if stored.size > configuration.maxFileSize {
            await discard(media, log, reason: "too_large")
            throw AIIMError(.payloadTooLarge, "the uploaded file is larger than the limit of \(configuration.maxFileSize) bytes")
        }
        guard stored.size == media.size else {
            await discard(media, log, reason: "size_mismatch")
            throw AIIMError.validation("the uploaded file is \(stored.size) bytes, not the declared \(media.size)")
        }
        if let storedType = stored.contentType, MediaTypes.essence(storedType) != MediaTypes.essence(media.contentType) {
            await discard(media, log, reason: "type_mismatch")
            throw AIIMError(.unsupportedMediaType, "the file was uploaded as \(storedType), not \(media.contentType)")
        }

        // What is verified, and later served, is a server-side copy under a key of this attempt
        // that no presigned URL can write: a PUT to the upload URL after (or during) this
        // verification can never change what downloads get. The key has a row before the copy
        // exists, so a copy this attempt leaves behind (crash, lost race) is swept.
        let start = ContinuousClock.now
        let verifiedKey = MediaIDs.verifiedKey(conversationID: media.conversationID, mediaID: mediaID)
        let reservation = try await store.reserveKey(verifiedKey, for: media)
        let inspection: UploadInspection
        do {
            try await storage.copyObject(from: media.objectKey, to: verifiedKey, logger: log)
            inspection = try await inspect(verifiedKey, limit: media.size, log)
        } catch is UploadTooLarge {
            await dropCopy(verifiedKey, log)
            await discard(media, log, reason: "size_mismatch")
            throw AIIMError.validation("the uploaded file is larger than the declared \(media.size) bytes")
        } catch let error as S3Error where error.code == .notFound {
            await dropCopy(verifiedKey, log)
            throw AIIMError.notFound("no file was uploaded for this media_id; upload it to upload_url first")
        } catch {
            await dropCopy(verifiedKey, log)
            throw storageFailure(error, log)
        }
        Timer(label: "aiim_media_verify_seconds").recordNanoseconds(start.elapsedNanoseconds)
        guard inspection.size == media.size else {
            await dropCopy(verifiedKey, log)
            await discard(media, log, reason: "size_mismatch")
            throw AIIMError.validation("the uploaded file is \(inspection.size) bytes, not the declared \(media.size)")
        }
        guard inspection.sha256 == fileHash else {
            await dropCopy(verifiedKey, log)
            await discard(media, log, reason: "hash_mismatch")
            throw AIIMError.validation("file_hash does not match the uploaded file")
        }
        let canonical = MediaTypes.canonical(media.contentType)
        guard MediaTypes.contentFits(inspection.format, canonicalType: canonical) else {
            await dropCopy(verifiedKey, log)
            await discard(media, log, reason: "content_mismatch")
            throw AIIMError(.unsupportedMediaType, "the uploaded bytes are not \(canonical)")
        }
        let durationMs = canonical.hasPrefix("audio/") || canonical.hasPrefix("video/") ? inspection.durationMs : nil
        guard let ready = try await store.markReady(
            mediaID: mediaID, sha256: inspection.sha256, size: inspection.size, durationMs: durationMs, etag: stored.etag,
            verifiedKey: verifiedKey, reservation: reservation)
        else {
            // Lost a race with a delete, the sweeper, or another complete of the same upload.
            await dropCopy(verifiedKey, log)
            let now = try await visibleMedia(command.actor, conversationID: conversationID, mediaID: mediaID)
            if now.isReady, now.sha256 == fileHash { return Self.result(now) }
            throw AIIMError(.invalidState, "the upload token has expired; request a new one")
        }
        // The upload key is no longer served; its own row sweeps anything PUT there later.
        do { try await storage.deleteObject(media.objectKey, logger: log) } catch {
            log.warning("cannot delete the verified upload's original now; the sweeper will", metadata: ["media.error": "\(error)"])
        }
        Counter(label: "aiim_media_uploads_total", dimensions: [("result", "ready")]).increment()
        log.info("upload verified", metadata: [
            "media.size": "\(inspection.size)", "media.format": "\(inspection.format?.rawValue ?? "unknown")",
            "media.duration_ms": "\(durationMs.map(String.init) ?? "-")",
        ])
        return Self.result(ready)
    }

    /// Deletes a verification copy that will not be served (its reservation row stays until
    /// swept, which deletes it again if this fails).
    private func dropCopy(_ key: String, _ log: Logger) async {
        do { try await storage.deleteObject(key, logger: log) } catch {
            log.warning("cannot delete a verification copy now; the sweeper will", metadata: ["media.error": "\(error)"])
        }
    }

    /// Streams the object once through the hasher, sniffer and duration parser.
    private func inspect(_ key: String, limit: Int64, _ log: Logger) async throws -> UploadInspection {
        let inspector = SharedUploadInspector(limit: limit)
        try await storage.getObject(key, logger: log) { chunk in try inspector.consume(chunk) }
        return inspector.finish()
    }

    /// Deletes a rejected upload's object at once. The row stays pending, so the client may upload
    /// again with the same URL while it is valid; the sweeper removes what is left after it expired.
    private func discard(_ media: MediaRecord, _ log: Logger, reason: String) async {
        Counter(label: "aiim_media_uploads_total", dimensions: [("result", reason)]).increment()
        log.notice("upload rejected", metadata: ["media.reason": "\(reason)"])
        do {
            try await storage.deleteObject(media.objectKey, logger: log)
        } catch {
            log.warning("cannot delete a rejected upload now; the sweeper will", metadata: ["media.error": "\(error)"])
        }
    }

    private static func result(_ media: MediaRecord) -> MediaUploadResult {
        MediaUploadResult(status: "success", mediaID: media.mediaID, contentType: media.contentType,
                          fileSize: media.size, filename: media.filename, durationMs: media.durationMs)
    }

    // MARK: attachment (for messaging's audio messages)

    /// The facts an audio message copies from a ready media of its conversation.
    func attachment(_ command: MediaAttachment) async throws -> MediaAttachmentInfo {
        guard let info = try await store.readyAttachment(
            mediaID: command.mediaID, conversationID: command.conversationID, tenantID: command.tenantID)
        else { throw AIIMError.validation("media_id must be an uploaded, verified file of this conversation") }
        return info
    }

    // MARK: download, metadata, delete

    func download(_ command: MediaDownload) async throws -> MediaDownloadLink {
        let mediaID = try MediaValidation.mediaID(command.mediaID)
        let conversationID = try MediaValidation.conversationID(command.conversationID)
        let media = try await visibleMedia(command.actor, conversationID: conversationID, mediaID: mediaID)
        guard media.isReady else { throw AIIMError.notFound("media not found or its upload is not complete") }
        try health.require()
        let presigned: S3PresignedRequest
        do {
            presigned = try storage.presignedURL(
                method: .get, key: media.objectKey, expires: configuration.urlExpiry,
                query: ["response-content-disposition": Self.contentDisposition(media.filename),
                        "response-content-type": media.contentType])
        } catch {
            throw storageFailure(error, logger("download", mediaID: mediaID, actor: command.actor))
        }
        return MediaDownloadLink(downloadURL: presigned.url, contentType: media.contentType, filename: media.filename,
                                 fileSize: media.size, expiresAt: presigned.expiresAt, durationMs: media.durationMs)
    }

    func metadata(_ command: MediaMetadata) async throws -> MediaInfo {
        let mediaID = try MediaValidation.mediaID(command.mediaID)
        let conversationID = try MediaValidation.conversationID(command.conversationID)
        let media = try await visibleMedia(command.actor, conversationID: conversationID, mediaID: mediaID)
        return MediaInfo(
            mediaID: media.mediaID, size: media.size, contentType: media.contentType, lastModified: media.completedAt,
            etag: media.etag, filename: media.filename, status: media.status, durationMs: media.durationMs,
            metadata: .init(conversationID: media.conversationID, uploaderID: media.uploaderID, filename: media.filename,
                            status: media.status, durationMs: media.durationMs, sha256: media.sha256,
                            createdAt: media.createdAt, expiresAt: media.isReady ? nil : media.expiresAt))
    }

    func delete(_ command: MediaDelete) async throws -> MediaDeleted {
        let mediaID = try MediaValidation.mediaID(command.mediaID)
        let conversationID = try MediaValidation.conversationID(command.conversationID)
        let log = logger("delete", mediaID: mediaID, actor: command.actor)
        guard let access = try await store.access(command.actor, conversationID: conversationID, mediaID: mediaID) else {
            throw AIIMError.forbidden()
        }
        guard let media = access.media, !media.deleted else { throw AIIMError.notFound("media not found") }
        guard media.uploaderID == command.actor.userID || access.role == "owner" else {
            throw AIIMError.forbidden("only the uploader or a conversation owner can delete this media")
        }
        try health.require()
        // Object first: a failure leaves the row, so a retry finishes the job and no object is orphaned.
        do { try await storage.deleteObject(media.objectKey, logger: log) } catch { throw storageFailure(error, log) }
        if media.isReady {
            try await store.deleteReady(mediaID: mediaID)
        } else {
            try await store.cancelPending(mediaID: mediaID)
        }
        log.info("media deleted")
        return MediaDeleted(status: "deleted", mediaID: mediaID)
    }

    /// The media as the actor may see it: `forbidden` for non-members, `not_found` for a media that
    /// does not exist, belongs to another conversation or tenant, or was deleted.
    private func visibleMedia(_ actor: Actor, conversationID: String, mediaID: String) async throws -> MediaRecord {
        guard let access = try await store.access(actor, conversationID: conversationID, mediaID: mediaID) else {
            throw AIIMError.forbidden()
        }
        guard let media = access.media, !media.deleted else { throw AIIMError.notFound("media not found") }
        return media
    }

    /// Storage errors reach clients as `storage_unavailable`; the detail stays in the log.
    private func storageFailure(_ error: any Error, _ log: Logger) -> any Error {
        if error is AIIMError || error is CancellationError { return error }
        let detail = (error as? S3Error)?.logDetail ?? "\(error)"
        log.error("storage call failed", metadata: ["media.error": "\(error)", "media.detail": "\(detail)"])
        return MediaErrors.storageUnavailable
    }

    /// `attachment` with the original name: an ASCII fallback and the exact UTF-8 name (RFC 6266).
    static func contentDisposition(_ filename: String) -> String {
        let fallback = String(String.UnicodeScalarView(filename.unicodeScalars.map { scalar in
            scalar.isASCII && scalar.value >= 0x20 && scalar != "\"" && scalar != "\\" && scalar != "%" ? scalar : "_"
        }))
        var encoded = ""
        for byte in filename.utf8 {
            let isAttrChar = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || "!#$&+-.^_`|~".utf8.contains(byte)
            encoded += isAttrChar ? String(UnicodeScalar(byte)) : String(format: "%%%02X", byte)
        }
        return "attachment; filename=\"\(fallback)\"; filename*=UTF-8''\(encoded)"
    }
}

/// Media ids and object keys, as the original made them.
enum MediaIDs {
    /// `media_` + 32 lower-case hex digits (128 random bits).
    static func make() -> String {
        var rng = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".utf8)
        var out = Array("media_".utf8)
        for _ in 0..<16 {
            let byte = UInt8.random(in: 0...255, using: &rng)
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func objectKey(conversationID: String, mediaID: String) -> String {
        "conversations/\(conversationID)/media/\(mediaID)"
    }

    /// Where one verification attempt copies an upload: a key of its own (concurrent completes
    /// never share one), under a prefix no presigned upload URL is ever signed for.
    static func verifiedKey(conversationID: String, mediaID: String) -> String {
        "conversations/\(conversationID)/verified/\(mediaID)-\(make().dropFirst("media_".count))"
    }
}

/// Builds the media service from the environment (tests call this too). Refuses to start with a
/// missing or malformed setting; never because storage is down.
public func buildMedia(env: Environment = Environment(), registry: PrometheusCollectorRegistry) throws -> MediaService {
    try MediaService.build(env: env, registry: registry)
}
