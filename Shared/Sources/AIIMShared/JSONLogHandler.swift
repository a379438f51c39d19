import Foundation
import Logging
import NIOConcurrencyHelpers

/// One JSON object per line on stdout: `ts`, `level`, `service`, `instance`, `msg`, `trace_id`,
/// `span_id` and the structured metadata. Grep a trace id across every service's log to follow a
/// request (see `deploy/trace`).
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let service: String
    let instance: String

    private static let lock = NIOLock()

    public init(label: String, service: String, instance: String, level: Logger.Level,
                metadataProvider: Logger.MetadataProvider?) {
        self.label = label
        self.service = service
        self.instance = instance
        self.logLevel = level
        self.metadataProvider = metadataProvider
    }

    /// Installs this handler for the whole process; call once, from `main`.
    public static func bootstrap(service: String, instance: String, level: String) {
        let lvl = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap({ label, provider in
            JSONLogHandler(label: label, service: service, instance: instance, level: lvl,
                           metadataProvider: provider)
        }, metadataProvider: Trace.metadataProvider)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String: JSONValue] = [
            "ts": .string(Timestamp.iso8601(Date())),
            "level": .string(event.level.rawValue),
            "service": .string(service),
            "instance": .string(instance),
            "logger": .string(label),
            "msg": .string(event.message.description),
        ]
        var all = metadata
        if let p = metadataProvider { all.merge(p.get(), uniquingKeysWith: { _, new in new }) }
        if let m = event.metadata { all.merge(m, uniquingKeysWith: { _, new in new }) }
        for (k, v) in all { fields[k] = Self.json(v) }
        let line = JSONValue.object(fields).jsonString() + "\n"
        Self.lock.withLock { FileHandle.standardOutput.write(Data(line.utf8)) }
    }

    static func json(_ v: Logger.Metadata.Value) -> JSONValue {
        switch v {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string(c.description)
        case .array(let a): .array(a.map(json))
        case .dictionary(let d): .object(d.mapValues(json))
        }
    }
}
