import AIIMJSON
import AIIMProtocol
import Foundation
import Testing

/// The WebSocket frames as docs/PROTOCOL.md documents them: what a device sends decodes into the
/// typed frames, and what the server sends has the documented fields (including the `null`s the
/// original always sent).
@Suite struct FrameTests {
    func json(_ frame: some ServerFrame, requestID: JSONValue? = nil) throws -> [String: JSONValue] {
        try #require(try frame.json(requestID: requestID).objectValue)
    }

    @Test func clientFramesDecodeTheirDocumentedFields() throws {
        let send = try JSONCoding.decode(SendMessageFrame.self, from: Array(#"""
            {"type":"send_msg","conversation_id":"c1","content":{"text":"hi"},"msg_type":"text","client_msg_id":"m1","reply_to":null}
            """#.utf8))
        #expect(send.conversationID == "c1")
        #expect(send.content?["text"]?.stringValue == "hi")
        #expect(send.clientMsgID == "m1")
        #expect(send.replyTo == nil)
        let chunk = try JSONCoding.decode(StreamChunkFrame.self, from: Array(#"{"conversation_id":"c","client_msg_id":"s","chunk":"a","chunk_index":3.0}"#.utf8))
        #expect(chunk.streamID == nil && chunk.clientMsgID == "s" && chunk.chunkIndex == 3 && chunk.streamEnd == nil)
        let read = try JSONCoding.decode(ReceiptFrame.self, from: Array(#"{"conversation_id":"c","last_read_seq":7}"#.utf8))
        #expect(read.lastReadSeq == 7 && read.seq == nil)
        #expect(throws: DecodingError.self) {
            try JSONCoding.decode(SubscribeFrame.self, from: Array(#"{"conversation_id":"c","after_seq":"x"}"#.utf8))
        }
    }

    @Test func acksCarryTheOriginalsFieldsAndNulls() throws {
        let message = MessageDTO(messageID: "m", conversationID: "c", senderID: "alice", type: "text", content: ["text": "hi"],
                                 createdAt: Date(timeIntervalSince1970: 0), seq: 5, replyTo: nil, clientMsgID: nil)
        let ack = try json(MessageSentAck(SendResult(message: message, duplicate: false), clientMsgID: nil), requestID: "r1")
        #expect(ack == ["type": "ack", "event": "message.sent", "message_id": "m", "seq": 5, "conversation_id": "c",
                        "client_msg_id": .null, "duplicate": false, "request_id": "r1"])
        let end = try json(StreamSentAck(StreamChunkResult(messageID: "m", streamID: "s", seq: 5, chunkIndex: nil, streamEnd: true,
                                                           state: "completed"), clientMsgID: "s"))
        #expect(end["chunk_index"] == .null)
        #expect(end["stream_end"] == true && end["state"] == "completed" && end["event"] == "stream.sent")
    }

    @Test func errorFramesEchoWhatLetsTheClientMatchThem() throws {
        let request: [String: JSONValue] = ["type": "send_msg", "client_msg_id": "m1", "request_id": 9, "conversation_id": "c",
                                            "content": "x", "call_id": .null]
        let e = try json(ErrorFrame(AIIMError(.rateLimited, "slow down"), request: request, retryAfterMillis: 120))
        #expect(e == ["type": "error", "code": "rate_limited", "message": "slow down", "client_msg_id": "m1", "request_id": 9,
                      "conversation_id": "c", "retry_after_ms": 120])
    }
}
