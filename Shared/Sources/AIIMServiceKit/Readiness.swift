import AIIMJSON
import Foundation
import NIOConcurrencyHelpers

/// What `/ready` reports: each dependency (redis, database, storage) is either up or down with a
/// reason. Updated by `DependencyMonitor`; read by the HTTP handler.
public final class Readiness: Sendable {
    let state = NIOLockedValueBox<[String: String?]>([:])

    public init(components: [String]) {
        state.withLockedValue { s in for c in components { s[c] = "not checked yet" } }
    }

    /// Records a component as up (`reason` nil) or down.
    public func set(_ component: String, down reason: String?) {
        state.withLockedValue { $0[component] = .some(reason) }
    }

    /// (ready, component → reason for those down).
    public func report() -> (ready: Bool, down: [String: String]) {
        let s = state.withLockedValue { $0 }
        var down: [String: String] = [:]
        for (k, v) in s { if let r = v { down[k] = r } }
        return (down.isEmpty, down)
    }

    let detailState = NIOLockedValueBox<[String: JSONValue]>([:])

    /// Records a detail `/ready` and `/health` show besides up/down (e.g. `redis_memory`).
    public func setDetail(_ key: String, _ value: JSONValue) {
        detailState.withLockedValue { $0[key] = value }
    }

    /// The details recorded so far.
    public var details: [String: JSONValue] { detailState.withLockedValue { $0 } }

    /// Every component's name.
    public var components: [String] { state.withLockedValue { Array($0.keys) }.sorted() }

    public func isUp(_ component: String) -> Bool {
        state.withLockedValue { $0[component].map { $0 == nil } ?? false }
    }
}
