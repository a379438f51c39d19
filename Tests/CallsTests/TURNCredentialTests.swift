import AIIMConfiguration
import AIIMProtocol
@testable import CallsCore
import Crypto
import Foundation
import Testing

@Suite struct TURNCredentialTests {
    static let secret = "s3cr3t-turn-secret"

    func turn(_ extra: [String: String] = [:]) throws -> TURNConfiguration {
        var env = ["TURN_SERVER": "turn.example.com:3478", "TURN_SECRET": Self.secret]
        env.merge(extra) { _, new in new }
        return try TURNConfiguration(env: Environment(env.filter { !$0.value.isEmpty }))
    }

    @Test func credentialIsTheTURNRESTFormula() {
        // printf %s "1700000300:alice" | openssl dgst -sha1 -hmac "s3cr3t-turn-secret" -binary | base64
        let c = ICEConfigurationBuilder.credential(userID: "alice", expiry: 1_700_000_300, secret: Self.secret)
        #expect(c.username == "1700000300:alice")
        #expect(c.password == "9AiNQ6nNeKfk6G7+5yt8XxOzGIg=")
    }

    @Test func credentialExpiresAfterTheConfiguredTTL() throws {
        let now = Date(timeIntervalSince1970: 1_700_000_000.7)
        let builder = ICEConfigurationBuilder(turn: try turn())
        #expect(builder.credential(for: "alice", now: now)?.username == "1700000300:alice")
        let short = ICEConfigurationBuilder(turn: try turn(["TURN_CREDENTIAL_TTL": "60"]))
        let c = try #require(short.credential(for: "alice", now: now))
        #expect(c.expiry == 1_700_000_060)
        #expect(short.configuration(for: "alice", now: now).ttl == 60)
    }

    @Test func configurationListsSTUNAndEveryTURNServerWithTheUsersOwnCredential() throws {
        let builder = ICEConfigurationBuilder(turn: try turn([
            "TURN_SERVER": "turn:a.example.com:3478, b.example.com:3479?transport=udp",
            "STUN_SERVERS": "stun:s.example.com:3478,s2.example.com", "TURN_REALM": "aiim.example",
        ]))
        let now = Date()
        let config = builder.configuration(for: "bob", now: now)
        #expect(config.iceServers.map(\.urls) == [
            ["stun:s.example.com:3478"], ["stun:s2.example.com"],
            ["turn:a.example.com:3478?transport=udp", "turn:a.example.com:3478?transport=tcp"],
            ["turn:b.example.com:3479?transport=udp", "turn:b.example.com:3479?transport=tcp"],
        ])
        let turnEntries = config.iceServers.filter { $0.username != nil }
        #expect(turnEntries.count == 2)
        for entry in turnEntries {
            #expect(entry.username?.hasSuffix(":bob") == true)
            #expect(entry.credentialType == "password")
            #expect(builder.verify(username: entry.username!, password: entry.credential!, now: now))
        }
        #expect(config.iceServers.prefix(2).allSatisfy { $0.username == nil && $0.credential == nil })
        #expect(config.ttl == 300)
        #expect(config.realm == "aiim.example")
        #expect(config.iceTransportPolicy == "all" && config.bundlePolicy == "balanced" && config.rtcpMuxPolicy == "require")
    }

    @Test func turnsIsOfferedOnlyWhenEnabled() throws {
        let off = ICEConfigurationBuilder(turn: try turn()).configuration(for: "a")
        #expect(!off.iceServers.flatMap(\.urls).contains { $0.hasPrefix("turns:") })
        let on = ICEConfigurationBuilder(turn: try turn(["TURNS_ENABLED": "true", "TURNS_PORT": "5350"])).configuration(for: "a")
        #expect(on.iceServers.last?.urls.last == "turns:turn.example.com:5350?transport=tcp")
    }

    @Test func withoutTURNThereAreNoCredentials() throws {
        let config = ICEConfigurationBuilder(turn: try TURNConfiguration(env: Environment([:]))).configuration(for: "a")
        #expect(config.iceServers == [ICEServer(urls: ["stun:stun.l.google.com:19302"])])
        #expect(config.ttl == nil)
    }

    @Test func stunDefaultsToTheTURNServers() throws {
        let config = ICEConfigurationBuilder(turn: try turn()).configuration(for: "a")
        #expect(config.iceServers.first?.urls == ["stun:turn.example.com:3478"])
    }

    @Test func refusesTURNWithoutASecretOrWithAWeakOne() throws {
        #expect(throws: ConfigurationError.self) { try TURNConfiguration(env: Environment(["TURN_SERVER": "t.example.com:3478"])) }
        #expect(throws: ConfigurationError.self) { try turn(["TURN_SECRET": "short"]) }
        #expect(throws: ConfigurationError.self) { try turn(["TURN_SECRET": "default_turn_secret"]) }
        #expect(throws: ConfigurationError.self) { try turn(["TURN_SERVER": "t.example.com:99999"]) }
        #expect(throws: ConfigurationError.self) { try turn(["TURN_SERVER": "a:b:c"]) }
        #expect(throws: ConfigurationError.self) { try turn(["TURN_CREDENTIAL_TTL": "0"]) }
        #expect(throws: ConfigurationError.self) { try turn(["TURN_SECRET_PREVIOUS": Self.secret]) }
        // The original's name for the secret still works.
        let alias = try TURNConfiguration(env: Environment(["TURN_SERVER": "t.example.com", "TURN_PASSWORD": Self.secret]))
        #expect(alias.secret == Self.secret)
        #expect(alias.turnServers == ["t.example.com:3478"])
        #expect(!alias.description.contains(Self.secret), "the secret is never printed")
    }

    @Test func rotationIssuesWithTheCurrentSecretAndAcceptsThePrevious() throws {
        let old = "old-secret-0123456789abcdef"
        let rotating = ICEConfigurationBuilder(turn: try turn(["TURN_SECRET_PREVIOUS": old]))
        let now = Date()
        let issued = try #require(rotating.credential(for: "alice", now: now))
        #expect(issued.password == ICEConfigurationBuilder.credential(userID: "alice", expiry: issued.expiry, secret: Self.secret).password)
        let before = ICEConfigurationBuilder.credential(userID: "alice", expiry: issued.expiry, secret: old)
        #expect(rotating.verify(username: before.username, password: before.password, now: now))
        let onlyOld = ICEConfigurationBuilder(turn: try turn(["TURN_SECRET": old]))
        #expect(!onlyOld.verify(username: issued.username, password: issued.password, now: now))
    }

    @Test func verifyRefusesForgedAndExpiredCredentials() throws {
        let builder = ICEConfigurationBuilder(turn: try turn())
        let now = Date()
        let c = try #require(builder.credential(for: "alice", now: now))
        #expect(builder.verify(username: c.username, password: c.password, now: now))
        #expect(!builder.verify(username: c.username.replacingOccurrences(of: "alice", with: "mallory"), password: c.password, now: now))
        #expect(!builder.verify(username: c.username, password: "AAAA" + c.password.dropFirst(4), now: now))
        #expect(!builder.verify(username: c.username, password: c.password, now: now.addingTimeInterval(301)))
    }
}

@Suite struct CallsConfigurationTests {
    @Test func defaultsAreTheDocumentedOnes() throws {
        let c = try CallsConfiguration(env: Environment([:]))
        #expect(c.ringTimeout == 45)
        #expect(c.disconnectGrace == 30)
        #expect(c.timerInterval == .seconds(1))
        #expect(c.turn.credentialTTL == 300)
    }

    @Test func readsAndChecksTheEnvironment() throws {
        let c = try CallsConfiguration(env: Environment(["CALL_RING_TIMEOUT": "1.5", "CALL_DISCONNECT_GRACE": "2",
                                                         "CALL_TIMER_INTERVAL_MS": "100"]))
        #expect(c.ringTimeout == 1.5 && c.disconnectGrace == 2 && c.timerInterval == .milliseconds(100))
        #expect(throws: ConfigurationError.self) { try CallsConfiguration(env: Environment(["CALL_RING_TIMEOUT": "0"])) }
        #expect(throws: ConfigurationError.self) { try CallsConfiguration(env: Environment(["CALL_RING_TIMEOUT": "soon"])) }
        #expect(throws: ConfigurationError.self) { try CallsConfiguration(env: Environment(["CALL_DISCONNECT_GRACE": "-1"])) }
    }
}
