import AIIMProtocol
import AIIMRedis
import Hummingbird

/// Media: REST routes of the original (`/api/aiim/media/...`), forwarded to the media service.
/// Field names are the original's (docs/MEDIA.md). The files themselves never pass through AIIM:
/// clients PUT and GET them with the presigned URLs these routes return.
extension Gateway {
    /// `upload_complete` streams the whole object through SHA-256 in the media service: it may take
    /// longer than an ordinary command on a slow store.
    var mediaVerifyTimeout: Duration { max(busTimeout, .seconds(60)) }

    func addMediaRoutes(to api: RouterGroup<AIIMRequestContext>) {
        let media = api.group("media")
        media.post("upload_token") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            let command = MediaUploadToken(
                actor: actor,
                conversationID: try MediaValidation.conversationID(body.string("conversation_id")),
                filename: try MediaValidation.filename(body.string("filename")),
                contentType: try MediaValidation.contentType(body.string("content_type")),
                fileSize: try MediaValidation.fileSize(body.optionalInt("file_size").map(Int64.init)))
            return try json(try await bus.request(command, timeout: busTimeout))
        }
        media.post("upload_complete") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            let command = MediaUploadComplete(
                actor: actor,
                mediaID: try MediaValidation.mediaID(body.string("media_id")),
                conversationID: try MediaValidation.conversationID(body.string("conversation_id")),
                fileHash: try MediaValidation.fileHash(body.string("file_hash")),
                fileSize: try MediaValidation.fileSize(body.optionalInt("file_size").map(Int64.init)))
            return try json(try await bus.request(command, timeout: mediaVerifyTimeout))
        }
        media.get("{media_id}/download") { request, context in
            let actor = try context.requireIdentity().actor()
            let (mediaID, conversationID) = try Self.mediaTarget(request, context)
            return try json(try await bus.request(
                MediaDownload(actor: actor, mediaID: mediaID, conversationID: conversationID), timeout: busTimeout))
        }
        media.get("{media_id}/metadata") { request, context in
            let actor = try context.requireIdentity().actor()
            let (mediaID, conversationID) = try Self.mediaTarget(request, context)
            return try json(try await bus.request(
                MediaMetadata(actor: actor, mediaID: mediaID, conversationID: conversationID), timeout: busTimeout))
        }
        media.delete("{media_id}") { request, context in
            let actor = try context.requireIdentity().actor()
            let (mediaID, conversationID) = try Self.mediaTarget(request, context)
            return try json(try await bus.request(
                MediaDelete(actor: actor, mediaID: mediaID, conversationID: conversationID), timeout: busTimeout))
        }
    }

    /// `{media_id}` from the path and the required `?conversation_id=`.
    static func mediaTarget(_ request: Request, _ context: AIIMRequestContext) throws -> (String, String) {
        let mediaID = try MediaValidation.mediaID(context.parameters.get("media_id"))
        guard let conversationID = request.stringQuery("conversation_id") else {
            throw AIIMError.validation("the conversation_id query parameter is required")
        }
        return (mediaID, try MediaValidation.conversationID(conversationID))
    }
}
