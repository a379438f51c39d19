import Foundation

/// MIME types, file extensions and content sniffing.
///
/// Three checks keep a file's bytes, its declared type and its name consistent:
/// 1. at `upload_token`, the declared type (canonicalised) must be allowed, and a known file
///    extension must fit it (`a.wav` is `audio/wav`, whatever Python's mimetypes would guess);
/// 2. the presigned PUT binds the declared type, so storage keeps exactly that `Content-Type`;
/// 3. at `upload_complete`, the first bytes are sniffed: a type with a known signature must match it.
public enum MediaTypes {
    /// `type/subtype` lower-cased, without parameters (`audio/webm;codecs=opus` → `audio/webm`).
    public static func essence(_ contentType: String) -> String {
        contentType.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
    }

    /// The canonical name of a type: aliases that browsers and recorders send map to one name.
    public static func canonical(_ contentType: String) -> String {
        let e = essence(contentType)
        return aliases[e] ?? e
    }

    static let aliases: [String: String] = [
        "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav", "audio/x-pn-wav": "audio/wav",
        "audio/mp3": "audio/mpeg", "audio/x-mp3": "audio/mpeg", "audio/mpeg3": "audio/mpeg", "audio/x-mpeg": "audio/mpeg",
        "audio/mpg": "audio/mpeg",
        "audio/x-m4a": "audio/mp4", "audio/m4a": "audio/mp4", "audio/x-mp4": "audio/mp4",
        "audio/x-aac": "audio/aac", "audio/aacp": "audio/aac",
        "audio/x-flac": "audio/flac", "audio/x-ogg": "audio/ogg", "application/ogg": "audio/ogg",
        "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png",
    ]

    /// Types that carry no promise about their bytes: any extension fits them.
    static let generic: Set<String> = ["application/octet-stream"]

    /// Canonical types each known extension may carry.
    static let extensionTypes: [String: Set<String>] = [
        "wav": ["audio/wav"], "wave": ["audio/wav"],
        "webm": ["audio/webm", "video/webm"], "weba": ["audio/webm"],
        "ogg": ["audio/ogg", "audio/opus", "video/ogg"], "oga": ["audio/ogg", "audio/opus"],
        "opus": ["audio/opus", "audio/ogg"], "ogv": ["video/ogg"],
        "mp3": ["audio/mpeg"],
        "m4a": ["audio/mp4", "audio/aac"], "mp4": ["audio/mp4", "video/mp4"], "aac": ["audio/aac", "audio/mp4"],
        "flac": ["audio/flac"], "amr": ["audio/amr"], "3gp": ["audio/3gpp", "video/3gpp"],
        "jpg": ["image/jpeg"], "jpeg": ["image/jpeg"], "png": ["image/png"], "gif": ["image/gif"],
        "webp": ["image/webp"], "pdf": ["application/pdf"], "txt": ["text/plain"],
    ]

    /// The lower-cased extension after the last dot, if the name has one.
    public static func fileExtension(_ filename: String) -> String? {
        guard let dot = filename.lastIndex(of: "."), dot != filename.startIndex else { return nil }
        let ext = filename[filename.index(after: dot)...].lowercased()
        return ext.isEmpty ? nil : ext
    }

    /// Types some known extension names.
    static let typesWithExtensions: Set<String> = extensionTypes.values.reduce(into: []) { $0.formUnion($1) }

    /// Whether `filename`'s extension fits `canonicalType`, so the name other members download never
    /// contradicts the content (`a.exe` is no `audio/mpeg`). A name without an extension fits any
    /// type; a known extension must name that type; an extension AIIM does not know fits only a
    /// type AIIM knows no extension for (one an operator added, e.g. `audio/x-caf` as `.caf`).
    public static func extensionFits(_ filename: String, canonicalType: String) -> Bool {
        if generic.contains(canonicalType) { return true }
        guard let ext = fileExtension(filename) else { return true }
        if let types = extensionTypes[ext] { return types.contains(canonicalType) }
        return !typesWithExtensions.contains(canonicalType)
    }

    /// Whether sniffed content may be stored as `canonicalType`: a type with a known signature must
    /// match it; a type without one (e.g. `text/plain`, `application/octet-stream`) is accepted
    /// as the operator allowed it.
    public static func contentFits(_ format: SniffedFormat?, canonicalType: String) -> Bool {
        guard SniffedFormat.verifiableTypes.contains(canonicalType) else { return true }
        guard let format else { return false }
        return format.compatibleTypes.contains(canonicalType)
    }
}

/// A file format recognised from its first bytes (magic numbers).
public enum SniffedFormat: String, Sendable, CaseIterable {
    case wav, ogg, mp3, aac, mp4, webm, matroska, flac, amr, jpeg, png, gif, webp, pdf

    /// How many leading bytes `sniff` looks at.
    public static let prefixLength = 64

    /// Canonical types a file of this format may be declared as.
    public var compatibleTypes: Set<String> {
        switch self {
        case .wav: ["audio/wav"]
        case .ogg: ["audio/ogg", "audio/opus", "video/ogg"]
        // An ID3 tag may front MP3 or ADTS AAC.
        case .mp3: ["audio/mpeg", "audio/aac"]
        case .aac: ["audio/aac"]
        // iOS and Android record AAC in an MP4 (`.m4a`) container and label it either way.
        case .mp4: ["audio/mp4", "video/mp4", "audio/aac", "audio/3gpp", "video/3gpp"]
        case .webm: ["audio/webm", "video/webm"]
        case .matroska: ["video/x-matroska", "audio/x-matroska"]
        case .flac: ["audio/flac"]
        case .amr: ["audio/amr"]
        case .jpeg: ["image/jpeg"]
        case .png: ["image/png"]
        case .gif: ["image/gif"]
        case .webp: ["image/webp"]
        case .pdf: ["application/pdf"]
        }
    }

    /// Every type some signature vouches for; uploads declared as one of these are sniffed.
    public static let verifiableTypes: Set<String> = allCases.reduce(into: []) { $0.formUnion($1.compatibleTypes) }

    /// The format of a file starting with `bytes` (at least its first `prefixLength` bytes, or all
    /// of a shorter file), or nil.
    public static func sniff(_ bytes: [UInt8]) -> SniffedFormat? {
        func at(_ offset: Int, _ ascii: String) -> Bool {
            let pattern = Array(ascii.utf8)
            return bytes.count >= offset + pattern.count && Array(bytes[offset..<(offset + pattern.count)]) == pattern
        }
        if at(0, "RIFF") && at(8, "WAVE") { return .wav }
        if at(0, "RIFF") && at(8, "WEBP") { return .webp }
        if at(0, "OggS") { return .ogg }
        if at(0, "fLaC") { return .flac }
        if at(0, "#!AMR") { return .amr }
        if at(0, "ID3") { return .mp3 }
        if at(4, "ftyp") { return .mp4 }
        if bytes.starts(with: [0x1A, 0x45, 0xDF, 0xA3]) {
            // The EBML header names its DocType within the first few dozen bytes.
            return contains(bytes, "webm") ? .webm : .matroska
        }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if at(0, "GIF87a") || at(0, "GIF89a") { return .gif }
        if at(0, "%PDF-") { return .pdf }
        if bytes.count >= 2, bytes[0] == 0xFF {
            if bytes[1] & 0xF6 == 0xF0 { return .aac }  // ADTS: sync, layer 00
            if MPEGAudioFrame(bytes) != nil { return .mp3 }
        }
        return nil
    }

    static func contains(_ bytes: [UInt8], _ ascii: String) -> Bool {
        let pattern = Array(ascii.utf8)
        guard bytes.count >= pattern.count else { return false }
        for start in 0...(bytes.count - pattern.count) where bytes[start..<(start + pattern.count)].elementsEqual(pattern) {
            return true
        }
        return false
    }
}
