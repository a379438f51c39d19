import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1

/// The gateway's connections: hummingbird-websocket's HTTP/1 channel with a WebSocket upgrade,
/// plus a deadline for the first request head (`HTTP_HEADER_TIMEOUT`). Hummingbird's idle
/// timeout (`HTTP_IDLE_TIMEOUT`) only starts once the first request has been parsed, so without
/// the deadline a client that sends half a request line and stalls would hold its connection
/// forever.
struct GatewayChildChannel: ServerChildChannel {
    let inner: HTTP1WebSocketUpgradeChannel
    let headerTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<HTTP1WebSocketUpgradeChannel.Value> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(RequestHeadDeadline(timeout: headerTimeout), position: .first)
        }.flatMap {
            inner.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: HTTP1WebSocketUpgradeChannel.Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 with the WebSocket upgrade of `webSocketRouter`, with the gateway's timeouts.
    static func gateway(
        webSocketRouter: Router<AIIMRequestContext>, configuration: HTTP1WebSocketUpgradeChannel.Configuration,
        headerTimeout: TimeAmount
    ) -> HTTPServerBuilder {
        let webSocketResponder = webSocketRouter.buildResponder()
        return .init { responder in
            GatewayChildChannel(
                inner: HTTP1WebSocketUpgradeChannel(responder: responder, webSocketResponder: webSocketResponder,
                                                    configuration: configuration),
                headerTimeout: headerTimeout)
        }
    }
}

/// Closes a connection whose first request head has not fully arrived within `timeout` of its
/// start, then leaves the pipeline. It reads raw bytes (it sits in front of the HTTP decoder):
/// the head ends at the first empty line.
final class RequestHeadDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let timeout: TimeAmount
    private var deadline: Scheduled<Void>?
    /// Line feeds seen in a row (carriage returns in between do not count).
    private var newlines = 0
    private var done = false

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    private func start(_ context: ChannelHandlerContext) {
        guard deadline == nil, !done else { return }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !done {
            let buffer = unwrapInboundIn(data)
            for byte in buffer.readableBytesView where byte != UInt8(ascii: "\r") {
                newlines = byte == UInt8(ascii: "\n") ? newlines + 1 : 0
                if newlines == 2 {
                    done = true
                    break
                }
            }
        }
        context.fireChannelRead(data)
        if done {
            deadline?.cancel()
            deadline = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}

/// hummingbird-websocket answers every refused WebSocket upgrade with a bare `400` and no body:
/// its `failedUpgrade` path writes a fixed response and drops the route's. This middleware (the
/// outermost) sees the route's complete refusal (status, JSON error body, security and trace
/// headers) and has it written instead, by putting a `RefusedUpgradeResponse` in the
/// connection's pipeline before the upgrade is declined.
struct UpgradeRefusalMiddleware: RouterMiddleware {
    typealias Context = AIIMRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = try await next(request, context)
        // A plain HTTP request never carries `Upgrade: websocket` here: hummingbird-websocket
        // redirects those before the router.
        guard response.status != .ok, request.headers[.upgrade]?.lowercased() == "websocket" else { return response }
        let collector = BodyCollector()
        try await response.body.write(collector)
        let body = collector.buffer
        var headers = HTTPHeaders(response.headers.map { ($0.name.rawName, $0.value) })
        headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        headers.replaceOrAdd(name: "Connection", value: "close")
        let head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: response.status.code), headers: headers)
        let channel = context.channel
        try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.addHandler(RefusedUpgradeResponse(head: head, body: body))
        }.get()
        return Response(status: response.status, headers: response.headers, body: .init(byteBuffer: body))
    }
}

/// Collects a response body in memory (a refusal's JSON error, a few hundred bytes).
final class BodyCollector: ResponseBodyWriter, @unchecked Sendable {
    var buffer = ByteBuffer()
    func write(_ buffer: ByteBuffer) async throws { self.buffer.writeImmutableBuffer(buffer) }
    func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

/// Replaces the bare `400` that hummingbird-websocket writes for a refused upgrade with the
/// route's response. Sits between NIO's HTTP encoder and hummingbird's codec.
final class RefusedUpgradeResponse: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    let head: HTTPResponseHead
    let body: ByteBuffer

    init(head: HTTPResponseHead, body: ByteBuffer) {
        self.head = head
        self.body = body
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head:
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: promise)
        case .body:
            promise?.succeed()  // the library's refusal has no body; ours went with the head
        case .end(let trailers):
            context.write(wrapOutboundOut(.end(trailers)), promise: promise)
        }
    }
}
