import AIIMConfiguration
import AIIMProtocol
import AIIMServiceKit
import CallsCore
import Foundation
import GatewayCore
import MediaCore
import Testing

// Every service refuses to start (exit 78: its configuration throws before anything runs) with
// a placeholder secret: the exact values shipped in deploy/env/*.example, any CHANGE_ME… value,
// and well-known defaults such as MinIO's `minioadmin`.

@Suite struct PlaceholderSecretTests {
    /// KEY=value lines of a shipped example env file, values as written (no expansion).
    static func example(_ name: String) throws -> [String: String] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("deploy/env/\(name)"), encoding: .utf8)
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return values
    }

    static let real = "3f9a1c0e7b5d4a2f8e6c1b9d0a7f5e3c"
    static let redis = "redis://:\(real)@127.0.0.1:6379/0"
    static let database = "postgres://aiim:\(real)@127.0.0.1:5432/aiim"

    /// The placeholders every secret must be refused with: the examples' values, any
    /// CHANGE_ME… spelling and the defaults attackers try first.
    static func placeholders(_ shipped: String...) -> [String] {
        shipped + ["CHANGE_ME", "change-me-0123456789abcdef0123456789", "CHANGEME_PLEASE_0123456789abcdef01",
                   "minioadmin", "password", "postgres", "default_turn_secret"]
    }

    static func env(_ values: [String: String]) -> Environment {
        Environment(["REDIS_URL": redis, "DATABASE_URL": database, "JWT_SECRET": real, "TURN_SERVER": "turn.example.com:3478",
                     "TURN_SECRET": real, "MINIO_ENDPOINT": "127.0.0.1:9000", "MINIO_ACCESS_KEY": "AKIA3F9A1C0E7B5D",
                     "MINIO_SECRET_KEY": real, "MINIO_BUCKET_NAME": "aiim-media"].merging(values) { _, new in new })
    }

    @Test func theExamplesShipOnlyObviousPlaceholders() throws {
        let main = try Self.example("main-host.env.example"), media = try Self.example("media-host.env.example")
        for key in ["JWT_SECRET", "POSTGRES_PASSWORD", "REDIS_PASSWORD"] {
            #expect(main[key]?.hasPrefix("CHANGE_ME") == true, "main-host \(key)")
        }
        for key in ["TURN_SECRET", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "POSTGRES_PASSWORD", "REDIS_PASSWORD"] {
            #expect(media[key]?.hasPrefix("CHANGE_ME") == true, "media-host \(key)")
        }
        // With real values every service starts (so the refusals below are about the secret).
        _ = try GatewayConfiguration(env: Self.env([:]))
        _ = try CallsConfiguration(env: Self.env([:]))
        _ = try MediaConfiguration(env: Self.env([:]))
        for service in [ServiceName.messaging, .media, .calls] {
            _ = try CommonConfiguration(service: service, env: Self.env([:]), requireDatabase: true)
        }
    }

    @Test func gatewayRefusesPlaceholderJWTSecrets() throws {
        let main = try Self.example("main-host.env.example")
        for value in Self.placeholders(try #require(main["JWT_SECRET"])) {
            #expect(throws: ConfigurationError.self, "JWT_SECRET=\(value)") {
                try GatewayConfiguration(env: Self.env(["JWT_SECRET": value]))
            }
        }
    }

    @Test func callsRefusesPlaceholderTURNSecrets() throws {
        let media = try Self.example("media-host.env.example")
        for value in Self.placeholders(try #require(media["TURN_SECRET"])) {
            for key in ["TURN_SECRET", "TURN_SECRET_PREVIOUS"] {
                #expect(throws: ConfigurationError.self, "\(key)=\(value)") {
                    try CallsConfiguration(env: Self.env([key: value]))
                }
            }
        }
    }

    @Test func mediaRefusesPlaceholderStorageKeys() throws {
        let media = try Self.example("media-host.env.example")
        // The example's MINIO_ACCESS_KEY/MINIO_SECRET_KEY are ${MINIO_ROOT_USER}/${MINIO_ROOT_PASSWORD}.
        for value in Self.placeholders(try #require(media["MINIO_ROOT_USER"]), "minio") {
            #expect(throws: ConfigurationError.self, "MINIO_ACCESS_KEY=\(value)") {
                try MediaConfiguration(env: Self.env(["MINIO_ACCESS_KEY": value]))
            }
        }
        for value in Self.placeholders(try #require(media["MINIO_ROOT_PASSWORD"]), "minio123") {
            #expect(throws: ConfigurationError.self, "MINIO_SECRET_KEY=\(value)") {
                try MediaConfiguration(env: Self.env(["MINIO_SECRET_KEY": value]))
            }
        }
    }

    @Test func everyServiceRefusesPlaceholderRedisAndDatabasePasswords() throws {
        let main = try Self.example("main-host.env.example")
        let redisPasswords = Self.placeholders(try #require(main["REDIS_PASSWORD"]), "redis")
        let databasePasswords = Self.placeholders(try #require(main["POSTGRES_PASSWORD"]))
        for password in redisPasswords {
            let url = "redis://:\(password)@127.0.0.1:6379/0"
            #expect(throws: ConfigurationError.self) { try GatewayConfiguration(env: Self.env(["REDIS_URL": url])) }
            for service in [ServiceName.messaging, .media, .calls] {
                #expect(throws: ConfigurationError.self, "\(service) REDIS_URL password \(password)") {
                    try CommonConfiguration(service: service, env: Self.env(["REDIS_URL": url]), requireDatabase: true)
                }
            }
        }
        for password in databasePasswords {
            let url = "postgres://aiim:\(password)@127.0.0.1:5432/aiim"
            for service in [ServiceName.messaging, .media, .calls] {
                #expect(throws: ConfigurationError.self, "\(service) DATABASE_URL password \(password)") {
                    try CommonConfiguration(service: service, env: Self.env(["DATABASE_URL": url]), requireDatabase: true)
                }
            }
        }
        // A URL without a password (a local socket, trust auth) is the server's business.
        _ = try CommonConfiguration(service: .messaging, env: Self.env(["DATABASE_URL": "postgres://aiim@127.0.0.1/aiim"]),
                                    requireDatabase: true)
    }

    @Test func theMessageNamesTheVariableNeverTheValue() throws {
        let value = "CHANGE_ME_32_BYTES_MIN"
        do {
            _ = try MediaConfiguration(env: Self.env(["MINIO_SECRET_KEY": value]))
            Issue.record("a placeholder MINIO_SECRET_KEY was accepted")
        } catch let error as ConfigurationError {
            #expect(error.description.contains("MINIO_SECRET_KEY"))
            #expect(!error.description.contains(value))
        }
    }
}
