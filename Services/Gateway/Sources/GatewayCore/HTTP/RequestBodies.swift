import AIIMJSON
import AIIMProtocol

// The REST request bodies (docs/API.md), decoded with `request.decode(as:context:)`. Fields the
// backends validate further (ids, content) are optional here, so a missing one gets the same
// `validation_failed` message from REST and WebSocket.

/// `POST /conversations`.
struct CreateConversationBody: Decodable {
    var type: String?
    var name: String?
    var memberIDs: [String]
    var settings: ConversationSettings?
    enum CodingKeys: String, CodingKey { case type, name, memberIDs = "member_ids", settings }
}

/// `PATCH /conversations/{id}`.
struct UpdateConversationBody: Decodable {
    var name: String?
    var settings: ConversationSettings?
}

/// `POST /conversations/{id}/members`.
struct AddMembersBody: Decodable {
    var userIDs: [String]
    var role: String?
    enum CodingKeys: String, CodingKey { case userIDs = "user_ids", role }
}

/// `POST /messages`: like `send_msg`, with the message type under `type`.
struct SendMessageBody: Decodable {
    var conversationID: String?
    var content: JSONValue?
    var type: String?
    var clientMsgID: String?
    var replyTo: String?
    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id", content, type, clientMsgID = "client_msg_id", replyTo = "reply_to"
    }
}

/// `PATCH /messages/{id}`.
struct EditMessageBody: Decodable {
    var content: JSONValue?
}

/// `POST /receipts/delivered` and `/receipts/read`: the `read` frame's fields, and `user_id`,
/// which must be the caller when given (the original sent it).
struct ReceiptBody: Decodable {
    var receipt: ReceiptFrame
    var userID: String?
    enum CodingKeys: String, CodingKey { case userID = "user_id" }
    init(from decoder: any Decoder) throws {
        receipt = try ReceiptFrame(from: decoder)
        userID = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(String.self, forKey: .userID)
    }
}

/// `POST /api_keys`.
struct CreateAPIKeyBody: Decodable {
    var name: String
    /// Seconds until the key stops working; absent: until revoked.
    var expiresInSeconds: Int?
    enum CodingKeys: String, CodingKey { case name, expiresInSeconds = "expires_in_seconds" }
}

/// `POST /media/upload_token`.
struct UploadTokenBody: Decodable {
    var conversationID: String
    var filename: String
    var contentType: String
    var fileSize: Int?
    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id", filename, contentType = "content_type", fileSize = "file_size"
    }
}

/// `POST /media/upload_complete`.
struct UploadCompleteBody: Decodable {
    var mediaID: String
    var conversationID: String
    var fileHash: String
    var fileSize: Int?
    enum CodingKeys: String, CodingKey {
        case mediaID = "media_id", conversationID = "conversation_id", fileHash = "file_hash", fileSize = "file_size"
    }
}

/// `POST /calls/initiate`: the call type under `call_type` or the original's `type`.
struct InitiateCallBody: Decodable {
    var conversationID: String?
    var toUserID: String?
    var callType: JSONValue?
    var type: JSONValue?
    enum CodingKeys: String, CodingKey { case conversationID = "conversation_id", toUserID = "to_user_id", callType = "call_type", type }
}
