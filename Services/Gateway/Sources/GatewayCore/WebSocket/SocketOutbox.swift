import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// The frames waiting for one socket, written straight to its NIO channel by one writer on the
/// channel's event loop: whatever was queued during an event-loop tick goes out with one flush
/// (one `writev`; a 1:1 message is three frames). While the socket cannot take more (the peer
/// reads slower than we write), frames wait here; more than `limit` waiting frames make the
/// device a slow consumer: the outbox stops and `finished` ends, and the connection is closed.
final class SocketOutbox: Sendable {
    enum Enqueued { case queued, overflowed, closed }

    let channel: any Channel
    let limit: Int
    /// Ends when the outbox overflowed (or was closed).
    let finished: AsyncStream<Void>
    private let finish: AsyncStream<Void>.Continuation
    private let state = NIOLockedValueBox(State())

    private struct State {
        var pending: [String] = []
        /// A write is scheduled on the event loop (or waiting for the socket to drain).
        var scheduled = false
        var overflowed = false
        var closed = false
    }

    init(channel: any Channel, limit: Int) {
        self.channel = channel
        self.limit = limit
        (finished, finish) = AsyncStream.makeStream(of: Void.self)
    }

    var overflowed: Bool { state.withLockedValue { $0.overflowed } }

    func enqueue(_ text: String) -> Enqueued {
        let (result, schedule) = state.withLockedValue { s -> (Enqueued, Bool) in
            if s.closed { return (.closed, false) }
            if s.pending.count >= limit {
                s.overflowed = true
                s.closed = true
                s.pending = []
                return (.overflowed, false)
            }
            s.pending.append(text)
            if s.scheduled { return (.queued, false) }
            s.scheduled = true
            return (.queued, true)
        }
        if result == .overflowed { finish.finish() }
        if schedule { channel.eventLoop.execute { self.write() } }
        return result
    }

    /// No more frames are written (the connection is ending).
    func close() {
        state.withLockedValue { s in
            s.closed = true
            s.pending = []
        }
        finish.finish()
    }

    /// On the event loop: writes everything pending, then flushes once.
    private func write() {
        let active = channel.isActive
        let stopped = state.withLockedValue { s -> Bool in
            guard s.closed || !active else { return false }
            s.closed = true
            s.scheduled = false
            s.pending = []
            return true
        }
        if stopped { return }  // the socket is gone: nothing to wait for
        guard channel.isWritable else {
            // The socket's buffers are full: try again shortly; meanwhile frames queue up to `limit`.
            channel.eventLoop.scheduleTask(in: .milliseconds(5)) { self.write() }
            return
        }
        let batch = state.withLockedValue { s -> [String] in
            s.scheduled = false
            defer { s.pending = [] }
            return s.pending
        }
        guard !batch.isEmpty else { return }
        for text in batch {
            channel.write(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)), promise: nil)
        }
        channel.flush()
    }
}
