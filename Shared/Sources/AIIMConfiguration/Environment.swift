import Foundation

/// Reads typed settings from the process environment. Bad values are reported as
/// `ConfigurationError` with the variable name, never with a secret's value.
public struct Environment: Sendable {
    public var values: [String: String]

    public init(_ values: [String: String] = ProcessInfo.processInfo.environment) {
        self.values = values
    }

    public func string(_ key: String, default def: String? = nil) -> String? {
        if let v = values[key]?.trimmingCharacters(in: .whitespaces), !v.isEmpty { return v }
        return def
    }

    public func require(_ key: String) throws -> String {
        guard let v = string(key) else { throw ConfigurationError("\(key) is required") }
        return v
    }

    public func int(_ key: String, default def: Int) throws -> Int {
        guard let s = string(key) else { return def }
        guard let v = Int(s) else { throw ConfigurationError("\(key) must be an integer") }
        return v
    }

    public func double(_ key: String, default def: Double) throws -> Double {
        guard let s = string(key) else { return def }
        guard let v = Double(s) else { throw ConfigurationError("\(key) must be a number") }
        return v
    }

    public func bool(_ key: String, default def: Bool) throws -> Bool {
        guard let s = string(key)?.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "\"'")) else { return def }
        switch s {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw ConfigurationError("\(key) must be true or false")
        }
    }

    public func list(_ key: String) -> [String] {
        (string(key) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }
}

/// A configuration problem found at start-up; the service refuses to start with this message.
public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
