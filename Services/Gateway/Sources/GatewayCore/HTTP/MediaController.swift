import AIIMProtocol
import Hummingbird

/// `/api/aiim/media`: presigned upload and download links, verification, metadata, delete
/// (media service). Field names are the original's (docs/MEDIA.md). The files never pass
/// through AIIM: clients PUT and GET them with the presigned URLs these routes return.
struct MediaController {
    let backends: Backends

    /// `upload_complete` streams the whole object through SHA-256 in the media service: it may
    /// take longer than an ordinary command on a slow store.
    var verifyTimeout: Duration { max(backends.timeout, .seconds(60)) }

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("upload_token", use: uploadToken)
        routes.post("upload_complete", use: uploadComplete)
        routes.get("{media_id}/download", use: download)
        routes.get("{media_id}/metadata", use: metadata)
        routes.delete("{media_id}", use: delete)
        return routes
    }

    @Sendable func uploadToken(_ request: Request, context: AuthenticatedContext) async throws -> MediaUploadTicket {
        let body = try await request.decode(as: UploadTokenBody.self, context: context)
        return try await backends.call(MediaUploadToken(
            actor: context.actor,
            conversationID: try MediaValidation.conversationID(body.conversationID),
            filename: try MediaValidation.filename(body.filename),
            contentType: try MediaValidation.contentType(body.contentType),
            fileSize: try MediaValidation.fileSize(body.fileSize.map(Int64.init))))
    }

    @Sendable func uploadComplete(_ request: Request, context: AuthenticatedContext) async throws -> MediaUploadResult {
        let body = try await request.decode(as: UploadCompleteBody.self, context: context)
        let command = MediaUploadComplete(
            actor: context.actor,
            mediaID: try MediaValidation.mediaID(body.mediaID),
            conversationID: try MediaValidation.conversationID(body.conversationID),
            fileHash: try MediaValidation.fileHash(body.fileHash),
            fileSize: try MediaValidation.fileSize(body.fileSize.map(Int64.init)))
        return try await backends.call(command, timeout: verifyTimeout)
    }

    @Sendable func download(_ request: Request, context: AuthenticatedContext) async throws -> MediaDownloadLink {
        let (mediaID, conversationID) = try target(request, context)
        return try await backends.call(MediaDownload(actor: context.actor, mediaID: mediaID, conversationID: conversationID))
    }

    @Sendable func metadata(_ request: Request, context: AuthenticatedContext) async throws -> MediaInfo {
        let (mediaID, conversationID) = try target(request, context)
        return try await backends.call(MediaMetadata(actor: context.actor, mediaID: mediaID, conversationID: conversationID))
    }

    @Sendable func delete(_ request: Request, context: AuthenticatedContext) async throws -> MediaDeleted {
        let (mediaID, conversationID) = try target(request, context)
        return try await backends.call(MediaDelete(actor: context.actor, mediaID: mediaID, conversationID: conversationID))
    }

    /// `{media_id}` from the path and the required `?conversation_id=`.
    func target(_ request: Request, _ context: AuthenticatedContext) throws -> (String, String) {
        let mediaID = try MediaValidation.mediaID(context.parameters.get("media_id"))
        guard let conversationID = request.stringQuery("conversation_id") else {
            throw AIIMError.validation("the conversation_id query parameter is required")
        }
        return (mediaID, try MediaValidation.conversationID(conversationID))
    }
}
