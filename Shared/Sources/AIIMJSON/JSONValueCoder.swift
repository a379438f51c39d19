import Foundation

/// `Codable` to and from `JSONValue`, the engine behind `JSONCoding`. Together with the
/// hand-written parser and writer (`JSONText.swift`) it replaces Foundation's coders on every
/// bus entry, frame and response: those walk the same containers but pay for coding paths,
/// boxing and, for `JSONValue` fields, an error per failed type guess; here a `JSONValue` field
/// is copied as it is. Dates are ISO-8601 strings (`Timestamp`), as before.
enum JSONValueCoder {
    static func encode(_ value: some Encodable) throws -> JSONValue {
        if let v = value as? JSONValue { return v }
        if let d = value as? Date { return .string(Timestamp.iso8601(d)) }
        let node = EncodingNode()
        try value.encode(to: ValueEncoder(node: node, codingPath: []))
        return node.value
    }

    static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue, path: [any CodingKey] = []) throws -> T {
        if T.self == JSONValue.self { return value as! T }
        if T.self == Date.self {
            guard case .string(let s) = value, let d = Timestamp.parse(s) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "expected an ISO-8601 timestamp"))
            }
            return d as! T
        }
        return try T(from: ValueDecoder(value: value, codingPath: path))
    }
}

// MARK: Encoding

/// One value being encoded; containers fill it in place, so nested containers need no write-back.
final class EncodingNode {
    enum Storage {
        case value(JSONValue)
        case object([String: EncodingNode])
        case array([EncodingNode])
    }

    var storage: Storage = .value(.null)

    init() {}
    init(_ value: JSONValue) { storage = .value(value) }

    var value: JSONValue {
        switch storage {
        case .value(let v): v
        case .object(let o): .object(o.mapValues(\.value))
        case .array(let a): .array(a.map(\.value))
        }
    }

    func object() {
        if case .object = storage { return }
        storage = .object([:])
    }

    func array() {
        if case .array = storage { return }
        storage = .array([])
    }

    func set(_ key: String, _ node: EncodingNode) {
        guard case .object(var o) = storage else { return }
        storage = .value(.null)  // keep the dictionary uniquely referenced while it changes
        o[key] = node
        storage = .object(o)
    }

    func append(_ node: EncodingNode) {
        guard case .array(var a) = storage else { return }
        storage = .value(.null)
        a.append(node)
        storage = .array(a)
    }

    var count: Int {
        if case .array(let a) = storage { return a.count }
        return 0
    }
}

struct ValueEncoder: Encoder {
    let node: EncodingNode
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.object()
        return KeyedEncodingContainer(KeyedEncoder<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.array()
        return UnkeyedEncoder(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleEncoder(node: node, codingPath: codingPath) }

    /// The node for one value: primitives directly, `JSONValue` and `Date` as they are written on
    /// the wire, anything else through its own `encode(to:)`.
    static func node(for value: some Encodable, path: [any CodingKey]) throws -> EncodingNode {
        if let v = value as? JSONValue { return EncodingNode(v) }
        if let s = value as? String { return EncodingNode(.string(s)) }
        if let d = value as? Date { return EncodingNode(.string(Timestamp.iso8601(d))) }
        let child = EncodingNode()
        try value.encode(to: ValueEncoder(node: child, codingPath: path))
        return child
    }
}

/// A number as JSON can carry it exactly; integers beyond 2^53 would silently change.
private func number<T: BinaryInteger>(_ v: T, _ path: [any CodingKey]) throws -> JSONValue {
    guard let d = Double(exactly: v) else {
        throw EncodingError.invalidValue(v, .init(codingPath: path, debugDescription: "integer too large for JSON"))
    }
    return .number(d)
}

struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: EncodingNode
    var codingPath: [any CodingKey]

    func put(_ v: JSONValue, _ key: Key) { node.set(key.stringValue, EncodingNode(v)) }

    mutating func encodeNil(forKey key: Key) throws { put(.null, key) }
    mutating func encode(_ v: Bool, forKey key: Key) throws { put(.bool(v), key) }
    mutating func encode(_ v: String, forKey key: Key) throws { put(.string(v), key) }
    mutating func encode(_ v: Double, forKey key: Key) throws { put(.number(v), key) }
    mutating func encode(_ v: Float, forKey key: Key) throws { put(.number(Double(v)), key) }
    mutating func encode(_ v: Int, forKey key: Key) throws { put(try number(v, codingPath + [key]), key) }
    mutating func encode(_ v: Int8, forKey key: Key) throws { put(.number(Double(v)), key) }
    mutating func encode(_ v: Int16, forKey key: Key) throws { put(.number(Double(v)), key) }
    mutating func encode(_ v: Int32, forKey key: Key) throws { put(.number(Double(v)), key) }
    mutating func encode(_ v: Int64, forKey key: Key) throws { put(try number(v, codingPath + [key]), key) }
    mutating func encode(_ v: UInt, forKey key: Key) throws { put(try number(v, codingPath + [key]), key) }
    mutating func encode(_ v: UInt8, forKey key: Key) throws { put(.number(Double(v)), key) }
    mutating func encode(_ v: UInt16, forKey key: Key) throws { put(.number(Double(v)), key) }
    mutating func encode(_ v: UInt32, forKey key: Key) throws { put(.number(Double(v)), key) }
    mutating func encode(_ v: UInt64, forKey key: Key) throws { put(try number(v, codingPath + [key]), key) }
    mutating func encode<T: Encodable>(_ v: T, forKey key: Key) throws {
        node.set(key.stringValue, try ValueEncoder.node(for: v, path: codingPath + [key]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingNode()
        child.object()
        node.set(key.stringValue, child)
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(node: child, codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = EncodingNode()
        child.array()
        node.set(key.stringValue, child)
        return UnkeyedEncoder(node: child, codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder { superEncoder(forKey: Key(stringValue: "super")!) }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let child = EncodingNode()
        node.set(key.stringValue, child)
        return ValueEncoder(node: child, codingPath: codingPath + [key])
    }
}

struct IndexKey: CodingKey {
    var intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ i: Int) { intValue = i }
    init?(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { return nil }
}

struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let node: EncodingNode
    var codingPath: [any CodingKey]
    var count: Int { node.count }

    func put(_ v: JSONValue) { node.append(EncodingNode(v)) }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ v: Bool) throws { put(.bool(v)) }
    mutating func encode(_ v: String) throws { put(.string(v)) }
    mutating func encode(_ v: Double) throws { put(.number(v)) }
    mutating func encode(_ v: Float) throws { put(.number(Double(v))) }
    mutating func encode(_ v: Int) throws { put(try number(v, codingPath)) }
    mutating func encode(_ v: Int64) throws { put(try number(v, codingPath)) }
    mutating func encode(_ v: UInt64) throws { put(try number(v, codingPath)) }
    mutating func encode<T: Encodable>(_ v: T) throws {
        node.append(try ValueEncoder.node(for: v, path: codingPath + [IndexKey(count)]))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = EncodingNode()
        child.object()
        node.append(child)
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(node: child, codingPath: codingPath + [IndexKey(count - 1)]))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = EncodingNode()
        child.array()
        node.append(child)
        return UnkeyedEncoder(node: child, codingPath: codingPath + [IndexKey(count - 1)])
    }

    mutating func superEncoder() -> any Encoder {
        let child = EncodingNode()
        node.append(child)
        return ValueEncoder(node: child, codingPath: codingPath + [IndexKey(count - 1)])
    }
}

struct SingleEncoder: SingleValueEncodingContainer {
    let node: EncodingNode
    var codingPath: [any CodingKey]

    func put(_ v: JSONValue) { node.storage = .value(v) }

    mutating func encodeNil() throws { put(.null) }
    mutating func encode(_ v: Bool) throws { put(.bool(v)) }
    mutating func encode(_ v: String) throws { put(.string(v)) }
    mutating func encode(_ v: Double) throws { put(.number(v)) }
    mutating func encode(_ v: Float) throws { put(.number(Double(v))) }
    mutating func encode(_ v: Int) throws { put(try number(v, codingPath)) }
    mutating func encode(_ v: Int8) throws { put(.number(Double(v))) }
    mutating func encode(_ v: Int16) throws { put(.number(Double(v))) }
    mutating func encode(_ v: Int32) throws { put(.number(Double(v))) }
    mutating func encode(_ v: Int64) throws { put(try number(v, codingPath)) }
    mutating func encode(_ v: UInt) throws { put(try number(v, codingPath)) }
    mutating func encode(_ v: UInt8) throws { put(.number(Double(v))) }
    mutating func encode(_ v: UInt16) throws { put(.number(Double(v))) }
    mutating func encode(_ v: UInt32) throws { put(.number(Double(v))) }
    mutating func encode(_ v: UInt64) throws { put(try number(v, codingPath)) }
    mutating func encode<T: Encodable>(_ v: T) throws {
        node.storage = try ValueEncoder.node(for: v, path: codingPath).storage
    }
}

// MARK: Decoding

struct ValueDecoder: Decoder {
    let value: JSONValue
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let o) = value else { throw mismatch([String: JSONValue].self, value, codingPath) }
        return KeyedDecodingContainer(KeyedDecoder<Key>(object: o, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let a) = value else { throw mismatch([JSONValue].self, value, codingPath) }
        return UnkeyedDecoder(array: a, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleDecoder(value: value, codingPath: codingPath) }
}

private func mismatch(_ type: Any.Type, _ value: JSONValue, _ path: [any CodingKey]) -> DecodingError {
    let found: String
    switch value {
    case .null: found = "null"
    case .bool: found = "a boolean"
    case .number: found = "a number"
    case .string: found = "a string"
    case .array: found = "an array"
    case .object: found = "an object"
    }
    return .typeMismatch(type, .init(codingPath: path, debugDescription: "expected \(type), found \(found)"))
}

/// Reads primitives out of a `JSONValue`; shared by the three container kinds.
private enum Read {
    static func bool(_ v: JSONValue, _ path: [any CodingKey]) throws -> Bool {
        guard case .bool(let b) = v else { throw mismatch(Bool.self, v, path) }
        return b
    }
    static func string(_ v: JSONValue, _ path: [any CodingKey]) throws -> String {
        guard case .string(let s) = v else { throw mismatch(String.self, v, path) }
        return s
    }
    static func double(_ v: JSONValue, _ path: [any CodingKey]) throws -> Double {
        guard case .number(let d) = v else { throw mismatch(Double.self, v, path) }
        return d
    }
    static func integer<T: BinaryInteger>(_ v: JSONValue, _ path: [any CodingKey]) throws -> T {
        guard case .number(let d) = v else { throw mismatch(T.self, v, path) }
        guard let i = T(exactly: d) else {
            throw DecodingError.dataCorrupted(.init(codingPath: path, debugDescription: "\(d) does not fit \(T.self)"))
        }
        return i
    }
}

struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: [String: JSONValue]
    var codingPath: [any CodingKey]
    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    func value(_ key: Key) throws -> JSONValue {
        guard let v = object[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no value for \(key.stringValue)"))
        }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool { try value(key) == .null }
    func decode(_ t: Bool.Type, forKey key: Key) throws -> Bool { try Read.bool(value(key), codingPath + [key]) }
    func decode(_ t: String.Type, forKey key: Key) throws -> String { try Read.string(value(key), codingPath + [key]) }
    func decode(_ t: Double.Type, forKey key: Key) throws -> Double { try Read.double(value(key), codingPath + [key]) }
    func decode(_ t: Float.Type, forKey key: Key) throws -> Float { Float(try Read.double(value(key), codingPath + [key])) }
    func decode(_ t: Int.Type, forKey key: Key) throws -> Int { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: Int8.Type, forKey key: Key) throws -> Int8 { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: Int16.Type, forKey key: Key) throws -> Int16 { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: Int32.Type, forKey key: Key) throws -> Int32 { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: Int64.Type, forKey key: Key) throws -> Int64 { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: UInt.Type, forKey key: Key) throws -> UInt { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: UInt8.Type, forKey key: Key) throws -> UInt8 { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: UInt16.Type, forKey key: Key) throws -> UInt16 { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: UInt32.Type, forKey key: Key) throws -> UInt32 { try Read.integer(value(key), codingPath + [key]) }
    func decode(_ t: UInt64.Type, forKey key: Key) throws -> UInt64 { try Read.integer(value(key), codingPath + [key]) }
    func decode<T: Decodable>(_ t: T.Type, forKey key: Key) throws -> T {
        try JSONValueCoder.decode(T.self, from: value(key), path: codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(value: value(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try ValueDecoder(value: value(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        ValueDecoder(value: object["super"] ?? .null, codingPath: codingPath)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        ValueDecoder(value: object[key.stringValue] ?? .null, codingPath: codingPath + [key])
    }
}

struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let array: [JSONValue]
    var codingPath: [any CodingKey]
    var currentIndex = 0
    var count: Int? { array.count }
    var isAtEnd: Bool { currentIndex >= array.count }

    init(array: [JSONValue], codingPath: [any CodingKey]) {
        self.array = array
        self.codingPath = codingPath
    }

    mutating func next() throws -> (JSONValue, [any CodingKey]) {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(JSONValue.self, .init(codingPath: codingPath, debugDescription: "array is at its end"))
        }
        defer { currentIndex += 1 }
        return (array[currentIndex], codingPath + [IndexKey(currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { return false }
        if array[currentIndex] == .null { currentIndex += 1; return true }
        return false
    }
    mutating func decode(_ t: Bool.Type) throws -> Bool { let (v, p) = try next(); return try Read.bool(v, p) }
    mutating func decode(_ t: String.Type) throws -> String { let (v, p) = try next(); return try Read.string(v, p) }
    mutating func decode(_ t: Double.Type) throws -> Double { let (v, p) = try next(); return try Read.double(v, p) }
    mutating func decode(_ t: Float.Type) throws -> Float { let (v, p) = try next(); return Float(try Read.double(v, p)) }
    mutating func decode(_ t: Int.Type) throws -> Int { let (v, p) = try next(); return try Read.integer(v, p) }
    mutating func decode(_ t: Int64.Type) throws -> Int64 { let (v, p) = try next(); return try Read.integer(v, p) }
    mutating func decode(_ t: UInt64.Type) throws -> UInt64 { let (v, p) = try next(); return try Read.integer(v, p) }
    mutating func decode<T: Decodable>(_ t: T.Type) throws -> T {
        let (v, p) = try next()
        return try JSONValueCoder.decode(T.self, from: v, path: p)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (v, p) = try next()
        return try ValueDecoder(value: v, codingPath: p).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (v, p) = try next()
        return try ValueDecoder(value: v, codingPath: p).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let (v, p) = try next()
        return ValueDecoder(value: v, codingPath: p)
    }
}

struct SingleDecoder: SingleValueDecodingContainer {
    let value: JSONValue
    var codingPath: [any CodingKey]

    func decodeNil() -> Bool { value == .null }
    func decode(_ t: Bool.Type) throws -> Bool { try Read.bool(value, codingPath) }
    func decode(_ t: String.Type) throws -> String { try Read.string(value, codingPath) }
    func decode(_ t: Double.Type) throws -> Double { try Read.double(value, codingPath) }
    func decode(_ t: Float.Type) throws -> Float { Float(try Read.double(value, codingPath)) }
    func decode(_ t: Int.Type) throws -> Int { try Read.integer(value, codingPath) }
    func decode(_ t: Int8.Type) throws -> Int8 { try Read.integer(value, codingPath) }
    func decode(_ t: Int16.Type) throws -> Int16 { try Read.integer(value, codingPath) }
    func decode(_ t: Int32.Type) throws -> Int32 { try Read.integer(value, codingPath) }
    func decode(_ t: Int64.Type) throws -> Int64 { try Read.integer(value, codingPath) }
    func decode(_ t: UInt.Type) throws -> UInt { try Read.integer(value, codingPath) }
    func decode(_ t: UInt8.Type) throws -> UInt8 { try Read.integer(value, codingPath) }
    func decode(_ t: UInt16.Type) throws -> UInt16 { try Read.integer(value, codingPath) }
    func decode(_ t: UInt32.Type) throws -> UInt32 { try Read.integer(value, codingPath) }
    func decode(_ t: UInt64.Type) throws -> UInt64 { try Read.integer(value, codingPath) }
    func decode<T: Decodable>(_ t: T.Type) throws -> T { try JSONValueCoder.decode(T.self, from: value, path: codingPath) }
}
