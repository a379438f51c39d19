import AIIMJSON
import AIIMProtocol
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
        var line = JSONValue.object(fields).jsonBytes()
        line.append(UInt8(ascii: "\n"))
        LogOutput.shared.append(line, urgent: event.level >= .error)
    }

    /// Writes out every buffered line; call before the process exits.
    public static func flush() { LogOutput.shared.flush() }

    static func json(_ v: Logger.Metadata.Value) -> JSONValue {
        switch v {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string(c.description)
        case .array(let a): .array(a.map(json))
        case .dictionary(let d): .object(d.mapValues(json))
        }
    }
}

/// Standard output with a small buffer: lines are written at most `interval` after they were
/// logged, in one system call per batch, instead of one write per line (a busy service logs a
/// line per command). Errors and worse are written at once, and so is a full buffer; a process
/// that exits normally flushes what is left. A process killed with SIGKILL can lose the last
/// `interval` of lines.
final class LogOutput: Sendable {
    static let shared = LogOutput()
    static let interval: Duration = .milliseconds(50)
    static let limit = 64 * 1024

    private let buffer = NIOLockedValueBox<[UInt8]>([])
    /// Serialises writes, so lines keep their order.
    private let writeLock = NIOLock()

    private init() {
        atexit { LogOutput.shared.flush() }
        // A plain thread: the flusher must run even when every task of the process is busy.
        let thread = Thread {
            while true {
                Thread.sleep(forTimeInterval: Double(LogOutput.interval.components.attoseconds) / 1e18)
                LogOutput.shared.flush()
            }
        }
        thread.name = "log-flush"
        thread.start()
    }

    func append(_ line: [UInt8], urgent: Bool) {
        let full = buffer.withLockedValue { b in
            b.append(contentsOf: line)
            return b.count >= Self.limit
        }
        if urgent || full { flush() }
    }

    func flush() {
        writeLock.withLock {
            let pending = buffer.withLockedValue { b in
                var taken: [UInt8] = []
                swap(&taken, &b)
                return taken
            }
            guard !pending.isEmpty else { return }
            pending.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = write(1, raw.baseAddress! + offset, raw.count - offset)
                    if n <= 0 {
                        if n < 0 && errno == EINTR { continue }
                        return
                    }
                    offset += n
                }
            }
        }
    }
}
