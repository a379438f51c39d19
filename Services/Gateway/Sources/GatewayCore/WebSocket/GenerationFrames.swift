import AIIMJSON
import AIIMProtocol
import Logging
import NIOConcurrencyHelpers

/// The AI-answer frames of `/api/aiim/ws` (docs/AI.md), forwarded to the messaging service.
/// Deltas are not awaited one by one: each answer has an appender that sends whatever arrived
/// while its previous batch was in flight as one command (one bus round trip, one event for the
/// devices), so a fast producer gets batching and a slow one no added delay; acks cover batches.
extension FrameRouter {
    mutating func addGenerationFrames(backends: Backends, hub: DeliveryHub) {
        on(GenerationStartFrame.self) { f, context in
            let snapshot = try await backends.call(try Commands.startGeneration(f, actor: context.actor))
            return GenerationAckFrame(event: "generation.started", snapshot.message)
        }
        on(GenerationDeltaFrame.self) { f, context in
            let id = try Validation.id(f.messageID, field: "message_id")
            guard !f.deltas.isEmpty, f.deltas.count <= 1000 else { throw AIIMError.validation("deltas must hold 1-1000 deltas") }
            try context.connection.appender(for: id, backends: backends, logger: context.logger).submit(f.deltas)
            return nil
        }
        on(GenerationStatusFrame.self) { f, context in
            let id = try Validation.id(f.messageID, field: "message_id")
            await context.connection.drainAppender(id)
            return GenerationAckFrame(event: "generation.status", try await backends.call(SetGenerationStatus(
                actor: context.actor, messageID: id, state: f.state, label: f.label, labelTTLMillis: f.labelTTLMillis)))
        }
        on(GenerationEndFrame.self) { f, context in
            let id = try Validation.id(f.messageID, field: "message_id")
            // Everything sent before the end is appended first.
            await context.connection.drainAppender(id)
            let snapshot = try await backends.call(EndGeneration(
                actor: context.actor, messageID: id, state: f.state, error: f.error, lastOffset: f.lastOffset))
            context.connection.removeAppender(id)
            return GenerationAckFrame(event: "generation.ended", snapshot.message)
        }
        on(GenerationTargetFrame.self) { f, context in
            let id = try Validation.id(f.messageID, field: "message_id")
            return GenerationAckFrame(event: "generation.stop", try await backends.call(StopGeneration(actor: context.actor, messageID: id)))
        }
        on(GenerationTargetFrame.resumeType, GenerationTargetFrame.self) { f, context in
            let id = try Validation.id(f.messageID, field: "message_id")
            try await hub.resume(context.connection, id, after: f.afterOffset, requestID: context.frame["request_id"])
            return nil
        }
    }
}

/// Batches one answer's deltas from one connection: at most one `generation.append` in flight;
/// what arrives meanwhile goes out next, together. Acks (and errors) go back to the producer's
/// connection as they come.
final class GenerationAppender: Sendable {
    let messageID: String
    let backends: Backends
    let connection: DeviceConnection
    let logger: Logger
    private struct State {
        var pending: [GenerationDelta] = []
        var flushing = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = NIOLockedValueBox(State())
    /// Deltas waiting beyond this are refused (`rate_limited`): the producer outruns the service.
    static let maxPending = 10_000

    init(messageID: String, backends: Backends, connection: DeviceConnection, logger: Logger) {
        self.messageID = messageID; self.backends = backends; self.connection = connection; self.logger = logger
    }

    func submit(_ deltas: [GenerationDelta]) throws {
        let start = try state.withLockedValue { s -> Bool in
            guard s.pending.count + deltas.count <= Self.maxPending else {
                throw AIIMError(.rateLimited, "more than \(Self.maxPending) deltas wait for this answer")
            }
            s.pending += deltas
            if s.flushing { return false }
            s.flushing = true
            return true
        }
        // Unstructured: the flush outlives this frame (the frame loop goes on to the next delta);
        // it ends when nothing is pending.
        if start { Task { await flush() } }
    }

    /// Returns once everything submitted so far has been answered.
    func drain() async {
        await withCheckedContinuation { cont in
            let done = state.withLockedValue { s -> Bool in
                if !s.flushing && s.pending.isEmpty { return true }
                s.waiters.append(cont)
                return false
            }
            if done { cont.resume() }
        }
    }

    /// Pauses between tries of a batch whose append timed out or found messaging away.
    static let retryPauses: [Duration] = [.milliseconds(100), .milliseconds(300), .milliseconds(900)]

    /// One batch, tried again while the bus times out or messaging is away: an append is
    /// idempotent (a repeated offset with the same content changes nothing), so a batch that
    /// was applied before its answer was lost is acknowledged on the next try, and the deltas
    /// behind it are not thrown away for a hiccup.
    private func append(_ batch: [GenerationDelta]) async throws -> GenerationAck {
        var pauses = Self.retryPauses[...]
        while true {
            do {
                return try await backends.call(AppendGeneration(actor: connection.actor, messageID: messageID, deltas: batch))
            } catch let e as AIIMError where (e.code == .timeout || e.code == .unavailable) && !pauses.isEmpty {
                logger.debug("append retried", metadata: ["message_id": "\(messageID)", "error": "\(e.code.rawValue)"])
                try? await Task.sleep(for: pauses.removeFirst())
            }
        }
    }

    private func flush() async {
        while true {
            let batch: [GenerationDelta] = state.withLockedValue { s in
                let n = min(s.pending.count, 1000)
                defer { s.pending.removeFirst(n) }
                return Array(s.pending.prefix(n))
            }
            if batch.isEmpty {
                let waiters = state.withLockedValue { s -> [CheckedContinuation<Void, Never>]? in
                    guard s.pending.isEmpty else { return nil }  // more came in between: go on
                    s.flushing = false
                    defer { s.waiters = [] }
                    return s.waiters
                }
                guard let waiters else { continue }
                for w in waiters { w.resume() }
                return
            }
            do {
                let ack = try await append(batch)
                connection.send(try GenerationAckFrame(event: "generation.delta", ack).json())
            } catch {
                // The rest cannot follow a refused delta: the producer resends from the last ack.
                let dropped = state.withLockedValue { s -> Int in defer { s.pending = [] }; return s.pending.count }
                var e = ErrorFrame(ErrorMiddleware<AIIMRequestContext>.map(error))
                e.echoed["message_id"] = .string(messageID)
                e.echoed["offset"] = .number(Double(batch.first?.offset ?? 0))
                if dropped > 0 { e.echoed["dropped"] = .number(Double(dropped)) }
                if let json = try? e.json() { connection.send(json) }
                logger.debug("deltas refused", metadata: ["message_id": "\(messageID)", "error": "\(error)"])
            }
        }
    }
}
