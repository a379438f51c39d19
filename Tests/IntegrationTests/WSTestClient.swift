import AIIMJSON
import AIIMProtocol
import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// A real WebSocket client (hummingbird's WSClient) that records every frame it receives.
final class WSTestClient: Sendable {
    let received = NIOLockedValueBox<[JSONValue]>([])
    let writer = NIOLockedValueBox<WebSocketOutboundWriter?>(nil)
    let closeCode = NIOLockedValueBox<Int?>(nil)
    let closed = NIOLockedValueBox(false)
    let task = NIOLockedValueBox<Task<Void, Never>?>(nil)
    /// Stop reading (to simulate a device that does not keep up).
    let paused = NIOLockedValueBox(false)

    /// Connects and waits for the `connected` frame.
    static func connect(port: Int, token: String, protocolHeader: Bool = false) async throws -> WSTestClient {
        let client = WSTestClient()
        var headers = HTTPFields()
        var url = "ws://127.0.0.1:\(port)/api/aiim/ws"
        if protocolHeader { headers[HTTPField.Name("Sec-WebSocket-Protocol")!] = "bearer, \(token)" } else { url += "?token=\(token)" }
        let config = WebSocketClientConfiguration(maxFrameSize: 1 << 20, additionalHeaders: headers)
        let t = Task {
            do {
                let frame = try await WebSocketClient.connect(url: url, configuration: config, logger: Logger(label: "ws-test")) { inbound, outbound, _ in
                    client.writer.withLockedValue { $0 = outbound }
                    for try await message in inbound.messages(maxSize: 1 << 22) {
                        while client.paused.withLockedValue({ $0 }) { try await Task.sleep(for: .milliseconds(50)) }
                        if case .text(let text) = message, let v = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) {
                            client.received.withLockedValue { $0.append(v) }
                        }
                    }
                }
                if let frame { client.closeCode.withLockedValue { $0 = Int(UInt16(webSocketErrorCode: frame.closeCode)) } }
            } catch {}
            client.closed.withLockedValue { $0 = true }
        }
        client.task.withLockedValue { $0 = t }
        guard try await client.waitFor({ $0["type"]?.stringValue == "connected" }) != nil else {
            throw AIIMError(.unavailable, "no connected frame")
        }
        return client
    }

    func send(_ frame: JSONValue) async throws {
        guard let w = writer.withLockedValue({ $0 }) else { throw AIIMError(.unavailable, "not connected") }
        try await w.write(.text(frame.jsonString()))
    }

    func sendRaw(_ text: String) async throws {
        guard let w = writer.withLockedValue({ $0 }) else { throw AIIMError(.unavailable, "not connected") }
        try await w.write(.text(text))
    }

    func sendBinary(_ bytes: [UInt8]) async throws {
        guard let w = writer.withLockedValue({ $0 }) else { throw AIIMError(.unavailable, "not connected") }
        try await w.write(.binary(ByteBuffer(bytes: bytes)))
    }

    /// The first received frame matching, waiting up to `timeout`.
    func waitFor(timeout: Duration = .seconds(10), _ match: @escaping @Sendable (JSONValue) -> Bool) async throws -> JSONValue? {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if let f = received.withLockedValue({ $0.first(where: match) }) { return f }
            if closed.withLockedValue({ $0 }) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        return received.withLockedValue { $0.first(where: match) }
    }

    /// Sends a frame with a fresh `request_id` and waits for the reply (or error) carrying it.
    func request(_ frame: [String: JSONValue], timeout: Duration = .seconds(10)) async throws -> JSONValue? {
        let rid = UUIDs.make()
        var f = frame
        f["request_id"] = .string(rid)
        try await send(.object(f))
        return try await waitFor(timeout: timeout) { $0["request_id"]?.stringValue == rid }
    }

    /// `seq`s of `message.created` events of one conversation, in arrival order.
    func createdSeqs(_ conversation: String) -> [Int] {
        received.withLockedValue { frames in
            frames.compactMap { f in
                guard f["data"]?["event"]?.stringValue == "message.created",
                      f["data"]?["conversation_id"]?.stringValue == conversation else { return nil }
                return f["data"]?["message"]?["seq"]?.intValue
            }
        }
    }

    /// Every frame received so far, in arrival order.
    var all: [JSONValue] { received.withLockedValue { $0 } }

    func frames(event: String) -> [JSONValue] {
        received.withLockedValue { $0.filter { $0["data"]?["event"]?.stringValue == event || $0["type"]?.stringValue == event } }
    }

    func close() async {
        if let w = writer.withLockedValue({ $0 }) { try? await w.close(.normalClosure, reason: nil) }
        task.withLockedValue { $0 }?.cancel()
    }
}
