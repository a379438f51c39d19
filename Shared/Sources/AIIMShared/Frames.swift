import Foundation

/// The frame of a conversation event, in the original's wrapping:
/// `{"type":"event","channel":"im:conv:<id>","data":{"event":..., "conversation_id":..., ...}}`.
public func conversationEvent(_ conversationID: String, _ event: String, _ fields: [String: JSONValue]) -> JSONValue {
    var data = fields
    data["event"] = .string(event)
    data["conversation_id"] = .string(conversationID)
    return .object(["type": .string("event"), "channel": .string("im:conv:\(conversationID)"), "data": .object(data)])
}

/// The text of a conversation event that carries a message (`message.created`,
/// `message.updated`, `message.stream_end`): the same shape as `conversationEvent` with a
/// `message` field, the message's JSON spliced in as the encoder wrote it. Live delivery and
/// replay both use it, so a device sees one shape whichever way a message reaches it.
public func messageEventText(_ event: String, _ message: MessageDTO) throws -> String {
    messageEventText(event, conversationID: message.conversationID, messageJSON: try JSONCoding.encode(message))
}

/// The same, for a message already encoded (`JSONCoding.encode(message)`).
public func messageEventText(_ event: String, conversationID: String, messageJSON: [UInt8]) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(160 + messageJSON.count)
    out.append(contentsOf: #"{"type":"event","channel":"#.utf8)
    JSONWriter.string("im:conv:" + conversationID, into: &out)
    out.append(contentsOf: #","data":{"event":"#.utf8)
    JSONWriter.string(event, into: &out)
    out.append(contentsOf: #","conversation_id":"#.utf8)
    JSONWriter.string(conversationID, into: &out)
    out.append(contentsOf: #","message":"#.utf8)
    out.append(contentsOf: messageJSON)
    out.append(contentsOf: "}}".utf8)
    return String(decoding: out, as: UTF8.self)
}
