import AIIMBackendKit
import AIIMProtocol
import CallsCore
import MediaCore
import MessagingCore
import Prometheus
import Testing

/// Each backend's router handles exactly the command types its `switch` handled before the
/// re-cut (plus `media.attachment`), so no wire type was lost or moved.
@Suite struct BackendRoutesTests {
    init() { TestLog.bootstrap() }

    @Test func eachBackendHandlesItsCommandTypes() async throws {
        let messaging = try buildMessaging(env: try TestEnv.serviceEnvironment(), registry: PrometheusCollectorRegistry())
        #expect(try messaging.router().types == [
            "apikey.create", "apikey.list", "apikey.revoke", "apikey.verify", "conversation.create", "conversation.get", "conversation.list",
            "conversation.members.add", "conversation.members.remove", "conversation.update",
            "generation.append", "generation.end", "generation.get", "generation.start", "generation.status", "generation.stop",
            "message.delete", "message.edit", "message.history",
            "message.send", "message.sync", "message.system", "ping", "presence.changed", "receipt.get", "receipt.mark",
            "session.open", "stream.chunk", "typing",
        ])
        await messaging.shutdown()

        let media = try buildMedia(env: try TestEnv.serviceEnvironment(try MediaStack.s3Environment()),
                                   registry: PrometheusCollectorRegistry())
        #expect(try media.router().types == [
            "media.attachment", "media.delete", "media.download", "media.metadata", "media.upload_complete", "media.upload_token",
        ])
        await media.shutdown()

        let calls = try buildCalls(env: try TestEnv.serviceEnvironment(), registry: PrometheusCollectorRegistry())
        #expect(try calls.router().types == [
            "call.accept", "call.get", "call.hangup", "call.history", "call.ice", "call.initiate", "call.reject",
            "call.ringing", "call.signal", "call.user.disconnected", "call.user.reconnected",
        ])
        await calls.shutdown()
    }
}
