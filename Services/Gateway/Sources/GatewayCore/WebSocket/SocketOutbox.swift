import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// The frames waiting for one socket, written straight to its NIO channel by one writer on the
/// channel's event loop: whatever was queued during an event-loop tick goes out with one flush
/// (one `writev`; a 1:1 message is three frames). While the socket cannot take more (the peer
/// reads slower than we write), frames wait here; more than `limit` waiting frames or more than
/// `byteLimit` waiting bytes make the device a slow consumer: the outbox stops and `finished`
/// ends, and the connection is closed. (A single frame larger than `byteLimit` still goes out
/// when nothing waits.) Senders that can wait (a replay, a gap fill) call `waitForRoom` first,
/// so a long history never overflows a healthy socket.
final class SocketOutbox: Sendable {
    enum Enqueued { case queued, overflowed, closed }

    let channel: any Channel
    let limit: Int
    let byteLimit: Int
    /// Ends when the outbox overflowed (or was closed).
    let finished: AsyncStream<Void>
    private let finish: AsyncStream<Void>.Continuation
    private let state = NIOLockedValueBox(State())

    private struct State {
        var pending: [String] = []
        var pendingBytes = 0
        /// A write is scheduled on the event loop (or waiting for the socket to drain).
        var scheduled = false
        var overflowed = false
        var closed = false
        /// Senders waiting in `waitForRoom`.
        var waiters: [CheckedContinuation<Bool, Never>] = []

        func hasRoom(limit: Int, byteLimit: Int) -> Bool {
            pending.count <= limit / 2 && pendingBytes <= byteLimit / 2
        }

        /// Stops the outbox; returns the waiters to resume (with false).
        mutating func stop() -> [CheckedContinuation<Bool, Never>] {
            closed = true
            pending = []
            pendingBytes = 0
            defer { waiters = [] }
            return waiters
        }
    }

    init(channel: any Channel, limit: Int, byteLimit: Int = .max) {
        self.channel = channel
        self.limit = limit
        self.byteLimit = byteLimit
        (finished, finish) = AsyncStream.makeStream(of: Void.self)
    }

    var overflowed: Bool { state.withLockedValue { $0.overflowed } }
    var isClosed: Bool { state.withLockedValue { $0.closed } }

    func enqueue(_ text: String) -> Enqueued {
        let size = text.utf8.count
        let (result, schedule, waiters) = state.withLockedValue { s -> (Enqueued, Bool, [CheckedContinuation<Bool, Never>]) in
            if s.closed { return (.closed, false, []) }
            if s.pending.count >= limit || (!s.pending.isEmpty && s.pendingBytes + size > byteLimit) {
                s.overflowed = true
                return (.overflowed, false, s.stop())
            }
            s.pending.append(text)
            s.pendingBytes += size
            if s.scheduled { return (.queued, false, []) }
            s.scheduled = true
            return (.queued, true, [])
        }
        for w in waiters { w.resume(returning: false) }
        if result == .overflowed { finish.finish() }
        if schedule { channel.eventLoop.execute { self.write() } }
        return result
    }

    /// The device must start over (its ordering buffers overflowed): closed as a slow consumer.
    func overflow() {
        let waiters = state.withLockedValue { s -> [CheckedContinuation<Bool, Never>] in
            guard !s.closed else { return [] }
            s.overflowed = true
            return s.stop()
        }
        for w in waiters { w.resume(returning: false) }
        finish.finish()
    }

    /// Waits until at most half the queue's frames and bytes are taken; false when the outbox
    /// has stopped (nothing more will be sent).
    func waitForRoom() async -> Bool {
        await withCheckedContinuation { (c: CheckedContinuation<Bool, Never>) in
            let answer = state.withLockedValue { s -> Bool? in
                if s.closed { return false }
                if s.hasRoom(limit: limit, byteLimit: byteLimit) { return true }
                s.waiters.append(c)
                return nil
            }
            if let answer { c.resume(returning: answer) }
        }
    }

    /// No more frames are written (the connection is ending).
    func close() {
        let waiters = state.withLockedValue { $0.stop() }
        for w in waiters { w.resume(returning: false) }
        finish.finish()
    }

    /// On the event loop: writes everything pending, then flushes once.
    private func write() {
        let active = channel.isActive
        let (stopped, stranded) = state.withLockedValue { s -> (Bool, [CheckedContinuation<Bool, Never>]) in
            guard s.closed || !active else { return (false, []) }
            s.scheduled = false
            return (true, s.stop())
        }
        for w in stranded { w.resume(returning: false) }
        if stopped { return }  // the socket is gone: nothing to wait for
        guard channel.isWritable else {
            // The socket's buffers are full: try again shortly; meanwhile frames queue up to the limits.
            channel.eventLoop.scheduleTask(in: .milliseconds(5)) { self.write() }
            return
        }
        let (batch, waiters) = state.withLockedValue { s -> ([String], [CheckedContinuation<Bool, Never>]) in
            s.scheduled = false
            defer { s.pending = []; s.pendingBytes = 0; s.waiters = [] }
            return (s.pending, s.waiters)
        }
        for w in waiters { w.resume(returning: true) }
        guard !batch.isEmpty else { return }
        for text in batch {
            channel.write(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)), promise: nil)
        }
        channel.flush()
    }
}
