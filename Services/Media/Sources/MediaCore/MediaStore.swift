import AIIMPostgres
import AIIMProtocol
import Foundation

/// One row of `media`.
struct MediaRecord: Sendable {
    var mediaID: String
    var tenantID: String
    var conversationID: String
    var uploaderID: String
    var status: String
    var contentType: String
    var size: Int64
    var durationMs: Int?
    var filename: String
    var objectKey: String
    var sha256: String?
    var etag: String?
    var expiresAt: Date
    var createdAt: Date
    var completedAt: Date?
    /// A pending upload cancelled by a delete (kept until swept).
    var deleted: Bool
    /// A pending upload whose URL expired more than the grace period ago (computed by PostgreSQL).
    var expired: Bool

    var isReady: Bool { status == "ready" }

    static let columns = """
        m.media_id, m.tenant_id, m.conversation_id, m.uploader_id, m.status, m.content_type, m.size,
        m.duration_ms, m.original_filename, m.object_key, m.sha256, m.etag, m.expires_at, m.created_at,
        m.completed_at, m.deleted_at IS NOT NULL AS deleted,
        (m.expires_at < now() - make_interval(secs => $GRACE)) AS expired
        """

    init(row: PostgresRow) throws {
        mediaID = try row.decode("media_id")
        tenantID = try row.decode("tenant_id")
        conversationID = try row.decode("conversation_id")
        uploaderID = try row.decode("uploader_id")
        status = try row.decode("status")
        contentType = try row.decode("content_type")
        size = try row.decode("size")
        durationMs = row.optional("duration_ms")
        filename = try row.decode("original_filename")
        objectKey = try row.decode("object_key")
        sha256 = row.optional("sha256")
        etag = row.optional("etag")
        expiresAt = try row.decode("expires_at")
        createdAt = try row.decode("created_at")
        completedAt = row.optional("completed_at")
        deleted = try row.decode("deleted")
        expired = try row.decode("expired")
    }
}

/// What the actor may see: their role in the conversation, and the media if it belongs to it.
struct MediaAccess: Sendable {
    var role: String
    var media: MediaRecord?
}

/// The `media` table and the membership it is checked against: `messaging_members`, the
/// messaging service's read-only view (its migration 0004), never messaging's tables. Every
/// statement is scoped by tenant.
struct MediaStore: Sendable {
    let db: PostgresClient
    /// How long after `expires_at` a pending upload may still complete.
    let grace: Duration

    private var graceSeconds: Double { Double(grace.wholeSeconds) }

    /// The actor's membership and the media (nil when it is not in this conversation and tenant);
    /// nil when the actor is not a member.
    func access(_ actor: Actor, conversationID: String, mediaID: String) async throws -> MediaAccess? {
        let sql = """
            SELECT cm.role, \(MediaRecord.columns.replacingOccurrences(of: "$GRACE", with: "$4"))
            FROM messaging_members cm
            LEFT JOIN media m ON m.media_id = $3 AND m.conversation_id = cm.conversation_id AND m.tenant_id = cm.tenant_id
            WHERE cm.conversation_id = $1 AND cm.user_id = $2 AND cm.tenant_id = $5
            """
        let result = try await db.query(sql, [conversationID, actor.userID, mediaID, graceSeconds, actor.tenantID])
        guard let row = result.first else { return nil }
        let media: MediaRecord? = row.optional("media_id", as: String.self) == nil ? nil : try MediaRecord(row: row)
        return MediaAccess(role: try row.decode("role"), media: media)
    }

    /// Inserts a pending upload if the actor is a member; false when not.
    func insertPending(
        mediaID: String, actor: Actor, conversationID: String, contentType: String, size: Int64, filename: String,
        objectKey: String, expiresAt: Date
    ) async throws -> Bool {
        let result = try await db.query("""
            INSERT INTO media (media_id, tenant_id, conversation_id, uploader_id, status, content_type, size,
                               original_filename, object_key, expires_at)
            SELECT $1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9
            WHERE EXISTS (SELECT 1 FROM messaging_members
                          WHERE conversation_id = $3 AND user_id = $4 AND tenant_id = $2)
            """, [mediaID, actor.tenantID, conversationID, actor.userID, contentType, size, filename, objectKey, expiresAt])
        return result.affectedRows == 1
    }

    /// Duration, type and size of a ready media of this conversation and tenant (what an audio
    /// message shows); nil when there is none.
    func readyAttachment(mediaID: String, conversationID: String, tenantID: String) async throws -> MediaAttachmentInfo? {
        let rows = try await db.query(
            "SELECT duration_ms, content_type, size FROM media WHERE media_id = $1 AND conversation_id = $2 AND tenant_id = $3 AND status = 'ready'",
            [mediaID, conversationID, tenantID])
        guard let row = rows.first else { return nil }
        return MediaAttachmentInfo(durationMs: row.optional("duration_ms"), contentType: try row.decode("content_type"),
                                   size: try row.decode("size"))
    }

    /// How long a reserved key (see `reserveKey`) is safe from the sweeper: longer than any
    /// verification (storage transfers are bounded by their timeouts).
    static let reservationSeconds = 3600

    /// Gives `key` a row before any object can exist there (every object in the bucket has one):
    /// a cancelled pending row (`deleted_at` set) of a fresh id, which the sweeper removes with
    /// its object an hour after its `expires_at` unless `markReady` hands the key to the media.
    /// Returns the reservation's id.
    func reserveKey(_ key: String, for media: MediaRecord) async throws -> String {
        let id = MediaIDs.make()
        try await db.query("""
            INSERT INTO media (media_id, tenant_id, conversation_id, uploader_id, status, content_type, size,
                               original_filename, object_key, expires_at, deleted_at)
            VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, now() + make_interval(secs => $9), now())
            """, [id, media.tenantID, media.conversationID, media.uploaderID, media.contentType, media.size, media.filename,
                  key, Self.reservationSeconds])
        return id
    }

    struct LostRace: Error {}

    /// `pending` → `ready`, unless the upload was cancelled, claimed by the sweeper or is past its
    /// grace period in the meantime. Returns the ready record, or nil if it lost that race.
    ///
    /// The media moves to `verifiedKey` (the server-side copy that was verified, reserved as
    /// `reservation`), which no presigned URL can write. The upload key keeps a cancelled row of
    /// its own until its URL expired plus the grace period, so whatever is still PUT there is swept.
    func markReady(mediaID: String, sha256: String, size: Int64, durationMs: Int?, etag: String?, verifiedKey: String,
                   reservation: String) async throws -> MediaRecord? {
        let sql = """
            UPDATE media m SET status = 'ready', sha256 = $2, size = $3, duration_ms = $4, etag = $5, completed_at = now(),
                object_key = $7
            WHERE m.media_id = $1 AND m.status = 'pending' AND m.deleted_at IS NULL AND m.sweep_claimed_until IS NULL
              AND m.expires_at >= now() - make_interval(secs => $6)
            RETURNING \(MediaRecord.columns.replacingOccurrences(of: "$GRACE", with: "$6"))
            """
        let grace = graceSeconds
        do {
            return try await db.withTransaction { conn -> MediaRecord? in
                let released = try conn.query(
                    "DELETE FROM media WHERE media_id = $1 AND object_key = $2 AND sweep_claimed_until IS NULL",
                    [reservation, verifiedKey])
                guard released.affectedRows == 1 else { throw LostRace() }
                let before = try conn.query("SELECT object_key FROM media WHERE media_id = $1 FOR UPDATE", [mediaID])
                guard let uploadKey: String = before.first?.optional("object_key") else { throw LostRace() }
                guard let row = try conn.query(sql, [mediaID, sha256, size, durationMs, etag, grace, verifiedKey]).first else {
                    throw LostRace()
                }
                let ready = try MediaRecord(row: row)
                try conn.query("""
                    INSERT INTO media (media_id, tenant_id, conversation_id, uploader_id, status, content_type, size,
                                       original_filename, object_key, expires_at, deleted_at)
                    VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, now())
                    """, [MediaIDs.make(), ready.tenantID, ready.conversationID, ready.uploaderID, ready.contentType, ready.size,
                          ready.filename, uploadKey, ready.expiresAt])
                return ready
            }
        } catch is LostRace {
            return nil
        }
    }

    /// Removes a ready media's row (its object is already gone). A media verified before its
    /// object moved to a verified key (older rows) still has the upload key: that row becomes a
    /// cancelled pending one until its URL expired, so a PUT through the still-valid URL after
    /// the delete is swept too.
    func deleteReady(mediaID: String) async throws {
        let grace = graceSeconds
        try await db.withTransaction { conn in
            let kept = try conn.query("""
                UPDATE media SET status = 'pending', deleted_at = now()
                WHERE media_id = $1 AND status = 'ready' AND object_key = 'conversations/' || conversation_id || '/media/' || media_id
                  AND expires_at >= now() - make_interval(secs => $2)
                """, [mediaID, grace])
            if kept.affectedRows == 0 {
                try conn.query("DELETE FROM media WHERE media_id = $1 AND status = 'ready'", [mediaID])
            }
        }
    }

    /// Marks a pending upload cancelled; the row stays until the sweeper takes it, so an object
    /// uploaded late through the still-valid URL is removed too.
    func cancelPending(mediaID: String) async throws {
        try await db.query("UPDATE media SET deleted_at = now() WHERE media_id = $1 AND status = 'pending' AND deleted_at IS NULL",
                           [mediaID])
    }

    /// Claims up to `limit` pending uploads past their grace period for this sweeper, for `lease`.
    /// `SKIP LOCKED` lets replicas sweep at once without waiting on, or double-claiming, rows.
    func claimExpired(limit: Int, lease: Duration) async throws -> [(mediaID: String, objectKey: String)] {
        let result = try await db.query("""
            UPDATE media SET sweep_claimed_until = now() + make_interval(secs => $3)
            WHERE media_id IN (
                SELECT media_id FROM media
                WHERE status = 'pending' AND expires_at < now() - make_interval(secs => $1)
                  AND (sweep_claimed_until IS NULL OR sweep_claimed_until < now())
                ORDER BY expires_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED)
            RETURNING media_id, object_key
            """, [graceSeconds, limit, Double(lease.wholeSeconds)])
        return try result.rows.map { (try $0.decode("media_id"), try $0.decode("object_key")) }
    }

    /// Deletes swept pending rows whose objects are gone.
    func removeSwept(_ mediaIDs: [String]) async throws {
        guard !mediaIDs.isEmpty else { return }
        try await db.query("DELETE FROM media WHERE media_id = ANY($1::text[]) AND status = 'pending'", [mediaIDs])
    }
}
