@testable import GatewayCore
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

/// The gateway's per-socket outbox on an in-memory channel (no servers): batching, waiting
/// while the socket is full, overflow, and that a closed socket ends it.
@Suite struct SocketOutboxTests {
    /// Counts flushes on their way to the socket.
    final class FlushCounter: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = WebSocketFrame
        var flushes = 0
        func flush(context: ChannelHandlerContext) {
            flushes += 1
            context.flush()
        }
    }

    static func activeChannel() throws -> (EmbeddedChannel, FlushCounter) {
        let counter = FlushCounter()
        let channel = EmbeddedChannel(handler: counter)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, counter)
    }

    static func written(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while let frame = try channel.readOutbound(as: WebSocketFrame.self) {
            #expect(frame.opcode == .text && frame.fin)
            out.append(String(buffer: frame.data))
        }
        return out
    }

    @Test func framesQueuedInOneTickLeaveInOrderUnderOneFlush() throws {
        let (channel, counter) = try Self.activeChannel()
        let outbox = SocketOutbox(channel: channel, limit: 10)
        for t in ["a", "b", "c"] { #expect(outbox.enqueue(t) == .queued) }
        #expect(try Self.written(channel).isEmpty)  // written by the event loop, not by the caller
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel) == ["a", "b", "c"])
        #expect(counter.flushes == 1)
        _ = outbox.enqueue("d")
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel) == ["d"])
        #expect(counter.flushes == 2)
    }

    @Test func aFullSocketHoldsFramesThenTooManyOverflowAndAClosedSocketEndsTheOutbox() throws {
        let (channel, _) = try Self.activeChannel()
        weak var weakOutbox: SocketOutbox?
        do {
            let outbox = SocketOutbox(channel: channel, limit: 3)
            weakOutbox = outbox
            channel.isWritable = false
            _ = outbox.enqueue("1")
            _ = outbox.enqueue("2")
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
            #expect(try Self.written(channel).isEmpty)  // waits while the peer does not read
            channel.isWritable = true
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(10))
            #expect(try Self.written(channel) == ["1", "2"])

            channel.isWritable = false
            for t in ["3", "4", "5"] { #expect(outbox.enqueue(t) == .queued) }
            #expect(outbox.enqueue("6") == .overflowed)
            #expect(outbox.overflowed)
            #expect(outbox.enqueue("7") == .closed)
        }
        // The socket closes (as the gateway closes a slow consumer): the outbox stops retrying
        // and is released, instead of polling a dead socket forever.
        try channel.close().wait()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
        #expect(weakOutbox == nil)
    }

    @Test func aSocketClosedWhileFramesWaitStopsTheRetries() throws {
        let (channel, _) = try Self.activeChannel()
        weak var weakOutbox: SocketOutbox?
        do {
            let outbox = SocketOutbox(channel: channel, limit: 10)
            weakOutbox = outbox
            channel.isWritable = false
            _ = outbox.enqueue("x")
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(20))
        }
        #expect(weakOutbox != nil)  // still retrying: the socket is open but full
        try channel.close().wait()
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(20))
        #expect(weakOutbox == nil)
        #expect(try Self.written(channel).isEmpty)
    }
}
