import AIIMConfiguration
import AIIMProtocol
import AIIMServiceKit
import CallsCore
import Testing

@Suite struct CallsBuildTests {
    @Test func refusesToBuildWithoutRedis() {
        #expect(throws: ConfigurationError.self) {
            _ = try CommonConfiguration(service: .calls, env: Environment([:]), requireDatabase: true)
        }
    }
}
