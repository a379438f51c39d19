import AIIMJSON
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
    var out = messageEventPrefix(event, conversationID: conversationID)
    out.reserveCapacity(out.count + messageJSON.count + 2)
    out.append(contentsOf: messageJSON)
    out.append(contentsOf: "}}".utf8)
    return String(decoding: out, as: UTF8.self)
}

/// Everything of a message event frame before the message's JSON.
func messageEventPrefix(_ event: String, conversationID: String) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(160)
    out.append(contentsOf: #"{"type":"event","channel":"#.utf8)
    JSONWriter.string("im:conv:" + conversationID, into: &out)
    out.append(contentsOf: #","data":{"event":"#.utf8)
    JSONWriter.string(event, into: &out)
    out.append(contentsOf: #","conversation_id":"#.utf8)
    JSONWriter.string(conversationID, into: &out)
    out.append(contentsOf: #","message":"#.utf8)
    return out
}

/// The `SendResult` JSON (`{"message":…,"duplicate":false}`) of a `message.created` frame
/// written by `messageEventText`, without parsing it; nil for a frame of another shape.
func sendResultJSON(fromCreatedEvent frameText: String, conversationID: String) -> [UInt8]? {
    let prefix = messageEventPrefix("message.created", conversationID: conversationID)
    let frame = Array(frameText.utf8)
    guard frame.count > prefix.count + 2, frame.starts(with: prefix), frame.suffix(2).elementsEqual("}}".utf8) else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(frame.count - prefix.count + 30)
    out.append(contentsOf: #"{"message":"#.utf8)
    out.append(contentsOf: frame[prefix.count..<(frame.count - 2)])
    out.append(contentsOf: #","duplicate":false}"#.utf8)
    return out
}

extension DeliveryEvent {
    /// For a `message.created` event that answers a send (`reply`): the `SendResult` JSON, cut
    /// from the frame `messageEventText` rendered, without parsing it.
    public var sendResult: [UInt8]? {
        guard let conversationId else { return nil }
        return sendResultJSON(fromCreatedEvent: frameText, conversationID: conversationId)
    }
}
