import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import Metrics
import NIOConcurrencyHelpers

/// A message the batch stored, with its JSON (encoded once: for the event and for the reply).
struct StoredSend: Sendable {
    var result: SendResult
    var messageJSON: [UInt8]

    /// The reply payload, `SendResult`'s shape with the message spliced in.
    var replyPayload: [UInt8] {
        var out: [UInt8] = Array(#"{"duplicate":false,"message":"#.utf8)
        out.append(contentsOf: messageJSON)
        out.append(UInt8(ascii: "}"))
        return out
    }
}

/// A validated message waiting for its batch.
struct PendingSend: Sendable {
    var messageID: String
    var conversationID: String
    var tenantID: String
    var senderID: String
    var kind: String
    var content: JSONValue
    var clientMsgID: String
    /// The request's trace, so its event carries it on.
    var trace: Trace?
    /// Set when the message's event answers the request (`SendMessage.replyByEvent`).
    var answer: EventReply? = nil
}

/// Group commit for sends: concurrent `send` commands queue here and are written by one
/// statement and one commit per batch (PostgreSQL parses, plans and fsyncs once for the batch
/// instead of once per message). While a batch is being written the next one gathers, so an
/// idle service still writes a lone message at once and a busy one writes larger batches.
final class SendBatcher: Sendable {
    /// Writes a batch; returns the messages it stored, by message id. A message it did not store
    /// (a duplicate, a non-member, a conflict) goes back to its sender's one-by-one path.
    /// The service passes `SendBatchWriter.write`; tests pass their own.
    typealias Write = @Sendable ([PendingSend]) async throws -> [String: StoredSend]

    private struct Waiting {
        let send: PendingSend
        let continuation: CheckedContinuation<StoredSend?, any Error>
    }

    private struct State {
        var queue: [Waiting] = []
        var writing = false
    }

    private let state = NIOLockedValueBox(State())
    private let maxBatch: Int
    private let write: Write

    init(maxBatch: Int = 256, write: @escaping Write) {
        self.maxBatch = max(1, maxBatch)
        self.write = write
    }

    /// The stored message, or nil when the batch left it to the one-by-one path.
    func submit(_ send: PendingSend) async throws -> StoredSend? {
        try await withCheckedThrowingContinuation { cont in
            let startWriter = state.withLockedValue { s in
                s.queue.append(Waiting(send: send, continuation: cont))
                guard !s.writing else { return false }
                s.writing = true
                return true
            }
            // Unstructured: the writer serves every queued send, not just this one; each sender
            // stays parked on its continuation, so the consumer's drain still waits for it.
            if startWriter { Task { await drain() } }
        }
    }

    private func drain() async {
        while true {
            let batch: [Waiting] = state.withLockedValue { s in
                let n = min(s.queue.count, maxBatch)
                if n == 0 { s.writing = false }
                defer { s.queue.removeFirst(n) }
                return Array(s.queue.prefix(n))
            }
            if batch.isEmpty { return }
            Recorder(label: "aiim_send_batch_size", aggregate: true).record(batch.count)
            do {
                let stored = try await write(batch.map(\.send))
                for w in batch { w.continuation.resume(returning: stored[w.send.messageID]) }
            } catch let e as PostgresError where !e.isTransient {
                // One message spoiled the statement (e.g. a retry racing its original on the
                // unique index): nothing was stored; each goes the one-by-one way. A transient
                // failure (connection, serialization, timeout) fails them all: the consumer retries.
                for w in batch { w.continuation.resume(returning: nil) }
            } catch {
                for w in batch { w.continuation.resume(throwing: error) }
            }
        }
    }
}
