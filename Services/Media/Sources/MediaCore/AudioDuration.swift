// Durations read from audio files while they stream past (during upload verification), with
// memory bounded by the largest header a parser asks for, never by the file's size.
// WAV: fmt byte rate and data size. Ogg (Opus, Vorbis): last granule position. MP3: Xing/VBRI
// frame count, else a scan of every frame header. ADTS AAC: frame scan. MP4/M4A: `mvhd`.
// WebM: `Duration`, else the last block's timecode. FLAC: STREAMINFO.

/// What a streaming parser wants next: skip `skip` bytes, then get the following `read` bytes.
enum ParseStep: Equatable {
    case next(skip: Int64, read: Int)
    case done
}

/// A format's duration parser, driven by `DurationReader`.
protocol DurationParser: Sendable {
    /// The first step, from offset 0.
    var firstStep: ParseStep { get }
    /// Called with exactly the bytes the last step asked for; `offset` is where they start.
    mutating func consume(_ bytes: [UInt8], at offset: Int64) -> ParseStep
    /// The duration, after the whole file went past (or the parser finished early).
    func durationMilliseconds(totalBytes: Int64) -> Int?
}

/// Feeds a stream, chunk by chunk, to a parser.
struct DurationReader: Sendable {
    /// Larger reads mean a corrupt or hostile header: the parser stops.
    static let maxRead = 1 << 17

    private var parser: any DurationParser
    private var finished = false
    private var skipRemaining: Int64 = 0
    private var wanted = 0
    private var buffer: [UInt8] = []
    /// Offset of the next byte to arrive.
    private var offset: Int64 = 0

    init(_ parser: any DurationParser) {
        self.parser = parser
        apply(parser.firstStep)
    }

    /// The parser for a sniffed format, or nil when AIIM reads no duration from it.
    static func forFormat(_ format: SniffedFormat?, prefix: [UInt8]) -> DurationReader? {
        switch format {
        case .wav?: DurationReader(WAVDuration())
        case .ogg?: DurationReader(OggDuration())
        case .mp3?, .aac?: DurationReader(MPEGAudioDuration(prefix: prefix))
        case .mp4?: DurationReader(MP4Duration())
        case .webm?, .matroska?: DurationReader(EBMLDuration())
        case .flac?: DurationReader(FLACDuration())
        default: nil
        }
    }

    private mutating func apply(_ step: ParseStep) {
        guard case .next(let skip, let read) = step, read > 0, read <= Self.maxRead, skip >= 0 else {
            finished = true
            return
        }
        skipRemaining = skip
        wanted = read
        buffer.removeAll(keepingCapacity: true)
    }

    mutating func feed(_ chunk: UnsafeRawBufferPointer) {
        var i = 0
        let n = chunk.count
        while i < n, !finished {
            if skipRemaining > 0 {
                let k = Int(min(skipRemaining, Int64(n - i)))
                i += k
                offset += Int64(k)
                skipRemaining -= Int64(k)
                continue
            }
            let k = min(wanted - buffer.count, n - i)
            buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[i..<(i + k)]))
            i += k
            offset += Int64(k)
            if buffer.count == wanted {
                apply(parser.consume(buffer, at: offset - Int64(wanted)))
            }
        }
    }

    mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    func durationMilliseconds(totalBytes: Int64) -> Int? {
        guard let ms = parser.durationMilliseconds(totalBytes: totalBytes), ms >= 0, ms < Int(Int32.max) else { return nil }
        return ms
    }
}

// MARK: Byte helpers

extension Array where Element == UInt8 {
    func le16(_ i: Int) -> UInt64 { UInt64(self[i]) | UInt64(self[i + 1]) << 8 }
    func le32(_ i: Int) -> UInt64 { le16(i) | le16(i + 2) << 16 }
    func le64(_ i: Int) -> UInt64 { le32(i) | le32(i + 4) << 32 }
    func be16(_ i: Int) -> UInt64 { UInt64(self[i]) << 8 | UInt64(self[i + 1]) }
    func be32(_ i: Int) -> UInt64 { be16(i) << 16 | be16(i + 2) }
    func be64(_ i: Int) -> UInt64 { be32(i) << 32 | be32(i + 4) }
    func ascii(_ i: Int, _ n: Int) -> String { String(decoding: self[i..<(i + n)], as: UTF8.self) }
}

/// `units * 1000 / rate`, without overflow for any 64-bit input.
func milliseconds(_ units: UInt64, per rate: UInt64) -> Int? {
    guard rate > 0 else { return nil }
    let (q, r) = (units / rate, units % rate)
    let (ms, overflow) = q.multipliedReportingOverflow(by: 1000)
    guard !overflow, ms < UInt64(Int32.max) else { return nil }
    return Int(ms + r * 1000 / rate)
}

// MARK: WAV

/// RIFF/WAVE: `fmt ` gives the byte rate, `data` the size of the samples. A recorder that streamed
/// the file may leave the data size 0 or 0xFFFFFFFF: the rest of the file is the data then.
struct WAVDuration: DurationParser {
    private enum Mode { case riff, chunk, fmt(rest: Int64) }
    private var mode = Mode.riff
    private var byteRate: UInt64 = 0
    private var dataOffset: Int64?
    private var dataSize: UInt64 = 0

    var firstStep: ParseStep { .next(skip: 0, read: 12) }

    mutating func consume(_ b: [UInt8], at offset: Int64) -> ParseStep {
        switch mode {
        case .riff:
            guard b.ascii(0, 4) == "RIFF", b.ascii(8, 4) == "WAVE" else { return .done }
            mode = .chunk
            return .next(skip: 0, read: 8)
        case .chunk:
            let size = b.le32(4)
            let padded = Int64(size) + Int64(size & 1)
            switch b.ascii(0, 4) {
            case "fmt ":
                guard size >= 12 else { return .done }
                let read = Int(min(size, 40))
                mode = .fmt(rest: padded - Int64(read))
                return .next(skip: 0, read: read)
            case "data":
                dataOffset = offset + 8
                dataSize = size
                return .done
            default:
                return .next(skip: padded, read: 8)
            }
        case .fmt(let rest):
            byteRate = b.le32(8)
            mode = .chunk
            return .next(skip: rest, read: 8)
        }
    }

    func durationMilliseconds(totalBytes: Int64) -> Int? {
        guard let dataOffset, byteRate > 0, totalBytes > dataOffset else { return nil }
        let available = UInt64(totalBytes - dataOffset)
        let size = (dataSize == 0 || dataSize == 0xFFFF_FFFF || dataSize > available) ? available : dataSize
        return milliseconds(size, per: byteRate)
    }
}

// MARK: Ogg

/// Ogg pages: the first page holds the codec's identification header (Opus pre-skip, Vorbis
/// sample rate); the last page of that logical stream holds the final granule position.
struct OggDuration: DurationParser {
    private enum Mode { case page, segments(first: Bool), identification }
    private enum Codec { case opus(preSkip: UInt64), vorbis(rate: UInt64) }
    private var mode = Mode.page
    private var codec: Codec?
    private var serial: UInt64?
    private var pages = 0
    private var lastGranule: UInt64?

    var firstStep: ParseStep { .next(skip: 0, read: 27) }

    mutating func consume(_ b: [UInt8], at offset: Int64) -> ParseStep {
        switch mode {
        case .page:
            guard b.ascii(0, 4) == "OggS" else { return .done }
            let granule = b.le64(6)
            let pageSerial = b.le32(14)
            if serial == nil { serial = pageSerial }
            if pageSerial == serial, granule != UInt64.max { lastGranule = granule }
            pages += 1
            let segments = Int(b[26])
            if segments == 0 { return .next(skip: 0, read: 27) }
            mode = .segments(first: pages == 1)
            return .next(skip: 0, read: segments)
        case .segments(let first):
            let body = b.reduce(0) { $0 + Int($1) }
            if first, body > 0 {
                mode = .identification
                return .next(skip: 0, read: body)
            }
            mode = .page
            return .next(skip: Int64(body), read: 27)
        case .identification:
            if b.count >= 19, b.ascii(0, 8) == "OpusHead" {
                codec = .opus(preSkip: b.le16(10))
            } else if b.count >= 16, b[0] == 1, b.ascii(1, 6) == "vorbis" {
                codec = .vorbis(rate: b.le32(12))
            } else {
                return .done
            }
            mode = .page
            return .next(skip: 0, read: 27)
        }
    }

    func durationMilliseconds(totalBytes: Int64) -> Int? {
        guard let codec, let lastGranule else { return nil }
        switch codec {
        case .opus(let preSkip): return milliseconds(lastGranule > preSkip ? lastGranule - preSkip : 0, per: 48_000)
        case .vorbis(let rate): return milliseconds(lastGranule, per: rate)
        }
    }
}

// MARK: MP3 and ADTS AAC

/// An MPEG-1/2/2.5 Layer I/II/III frame header.
struct MPEGAudioFrame {
    var sampleRate: UInt64
    var samples: UInt64
    var length: Int
    var isMPEG1: Bool
    var isMono: Bool
    var layer: Int

    private static let bitrates: [[Int]] = [
        [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],  // MPEG-1 layer I
        [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],  // MPEG-1 layer II
        [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],  // MPEG-1 layer III
        [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],  // MPEG-2/2.5 layer I
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],  // MPEG-2/2.5 layers II, III
    ]
    private static let sampleRates: [UInt64] = [44_100, 48_000, 32_000]

    init?(_ b: [UInt8]) {
        guard b.count >= 4, b[0] == 0xFF, b[1] & 0xE0 == 0xE0 else { return nil }
        let version = (b[1] >> 3) & 3  // 0: 2.5, 1: reserved, 2: 2, 3: 1
        let layerBits = (b[1] >> 1) & 3  // 1: III, 2: II, 3: I
        let bitrateIndex = Int(b[2] >> 4)
        let rateIndex = Int((b[2] >> 2) & 3)
        guard version != 1, layerBits != 0, bitrateIndex != 0, bitrateIndex != 15, rateIndex != 3 else { return nil }
        let layer = 4 - Int(layerBits)
        isMPEG1 = version == 3
        let table = isMPEG1 ? layer - 1 : (layer == 1 ? 3 : 4)
        let bitrate = Self.bitrates[table][bitrateIndex] * 1000
        sampleRate = Self.sampleRates[rateIndex] >> (version == 3 ? 0 : version == 2 ? 1 : 2)
        let padding = Int((b[2] >> 1) & 1)
        switch layer {
        case 1:
            samples = 384
            length = (12 * bitrate / Int(sampleRate) + padding) * 4
        case 2:
            samples = 1152
            length = 144 * bitrate / Int(sampleRate) + padding
        default:
            samples = isMPEG1 ? 1152 : 576
            length = (isMPEG1 ? 144 : 72) * bitrate / Int(sampleRate) + padding
        }
        isMono = b[3] >> 6 == 3
        self.layer = layer
        guard length >= 7 else { return nil }
    }

    /// Where a Xing/Info header sits in the first frame: after the header and the side information.
    var xingOffset: Int { 4 + (isMPEG1 ? (isMono ? 17 : 32) : (isMono ? 9 : 17)) }
}

/// An ADTS (raw AAC) frame header.
struct ADTSFrame {
    var sampleRate: UInt64
    var samples: UInt64
    var length: Int

    private static let sampleRates: [UInt64] = [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050,
                                                16_000, 12_000, 11_025, 8_000, 7_350]

    init?(_ b: [UInt8]) {
        guard b.count >= 7, b[0] == 0xFF, b[1] & 0xF6 == 0xF0 else { return nil }
        let rateIndex = Int((b[2] >> 2) & 0xF)
        guard rateIndex < Self.sampleRates.count else { return nil }
        sampleRate = Self.sampleRates[rateIndex]
        length = Int(b[3] & 3) << 11 | Int(b[4]) << 3 | Int(b[5] >> 5)
        samples = 1024 * (UInt64(b[6] & 3) + 1)
        guard length >= 7 else { return nil }
    }
}

/// MP3 (and ADTS AAC, which may share the `.mp3` sniff through an ID3 tag): skips ID3v2 tags;
/// the first frame's Xing/Info or VBRI header gives the exact frame count; otherwise every frame
/// header is read (the bodies are skipped) and their samples summed. Junk between frames is
/// skipped byte by byte, up to 64 KiB.
struct MPEGAudioDuration: DurationParser {
    private enum Mode { case header, firstFrame(MPEGAudioFrame, header: [UInt8]), resync }
    private static let headerLength = 7
    private static let maxResync = 64 * 1024
    private var mode = Mode.header
    private var window: [UInt8] = []
    private var resynced = 0
    private var seenFrame = false
    private var samples: UInt64 = 0
    private var sampleRate: UInt64 = 0
    private var exact: Int?
    let firstStep: ParseStep

    init(prefix: [UInt8]) {
        var skip: Int64 = 0
        if prefix.count >= 10, prefix.ascii(0, 3) == "ID3" {
            let size = Int64(prefix[6] & 0x7F) << 21 | Int64(prefix[7] & 0x7F) << 14
                | Int64(prefix[8] & 0x7F) << 7 | Int64(prefix[9] & 0x7F)
            skip = 10 + size + (prefix[5] & 0x10 != 0 ? 10 : 0)
        }
        firstStep = .next(skip: skip, read: Self.headerLength)
    }

    mutating func consume(_ b: [UInt8], at offset: Int64) -> ParseStep {
        switch mode {
        case .header:
            return frame(b)
        case .firstFrame(let frame, let header):
            let whole = header + b
            let x = frame.xingOffset
            if whole.count >= x + 12, whole.ascii(x, 4) == "Xing" || whole.ascii(x, 4) == "Info" {
                // A metadata frame, not audio; with the frames flag it gives the exact count.
                if whole.be32(x + 4) & 1 != 0 {
                    exact = milliseconds(whole.be32(x + 8) * frame.samples, per: frame.sampleRate)
                    return .done
                }
            } else if whole.count >= 36 + 18, whole.ascii(36, 4) == "VBRI" {
                exact = milliseconds(whole.be32(36 + 14) * frame.samples, per: frame.sampleRate)
                return .done
            } else {
                count(frame.samples, rate: frame.sampleRate)
            }
            mode = .header
            return .next(skip: 0, read: Self.headerLength)
        case .resync:
            window.append(b[0])
            window.removeFirst()
            resynced += 1
            if resynced > Self.maxResync { return .done }
            if MPEGAudioFrame(window) != nil || ADTSFrame(window) != nil { return frame(window) }
            return .next(skip: 0, read: 1)
        }
    }

    private mutating func frame(_ b: [UInt8]) -> ParseStep {
        if let f = MPEGAudioFrame(b) {
            if !seenFrame {
                seenFrame = true
                mode = .firstFrame(f, header: b)
                return .next(skip: 0, read: f.length - Self.headerLength)
            }
            count(f.samples, rate: f.sampleRate)
            mode = .header
            return .next(skip: Int64(f.length - Self.headerLength), read: Self.headerLength)
        }
        if let f = ADTSFrame(b) {
            seenFrame = true
            count(f.samples, rate: f.sampleRate)
            mode = .header
            return .next(skip: Int64(f.length - Self.headerLength), read: Self.headerLength)
        }
        window = b
        mode = .resync
        return .next(skip: 0, read: 1)
    }

    private mutating func count(_ frameSamples: UInt64, rate: UInt64) {
        samples += frameSamples
        if sampleRate == 0 { sampleRate = rate }
    }

    func durationMilliseconds(totalBytes: Int64) -> Int? {
        if let exact { return exact }
        guard samples > 0 else { return nil }
        return milliseconds(samples, per: sampleRate)
    }
}

// MARK: MP4 / M4A

/// ISO base media: walks the top-level boxes (skipping `mdat`, wherever `moov` is) to
/// `moov/mvhd`, which holds the timescale and the duration.
struct MP4Duration: DurationParser {
    private enum Mode { case box(inMoov: Bool), largeSize(type: String, inMoov: Bool), mvhd }
    private var mode = Mode.box(inMoov: false)
    private var timescale: UInt64 = 0
    private var duration: UInt64 = 0

    var firstStep: ParseStep { .next(skip: 0, read: 8) }

    mutating func consume(_ b: [UInt8], at offset: Int64) -> ParseStep {
        switch mode {
        case .box(let inMoov):
            let size = b.be32(0)
            let type = b.ascii(4, 4)
            if size == 1 {
                mode = .largeSize(type: type, inMoov: inMoov)
                return .next(skip: 0, read: 8)
            }
            if size == 0 { return type == "moov" ? descend() : .done }  // the box runs to the end of the file
            return box(type, size: size, header: 8, inMoov: inMoov)
        case .largeSize(let type, let inMoov):
            return box(type, size: b.be64(0), header: 16, inMoov: inMoov)
        case .mvhd:
            if b[0] == 1, b.count >= 32 {
                timescale = b.be32(20)
                duration = b.be64(24)
            } else if b.count >= 20 {
                timescale = b.be32(12)
                duration = b.be32(16)
                if duration == 0xFFFF_FFFF { duration = 0 }
            }
            return .done
        }
    }

    private mutating func descend() -> ParseStep {
        mode = .box(inMoov: true)
        return .next(skip: 0, read: 8)
    }

    private mutating func box(_ type: String, size: UInt64, header: UInt64, inMoov: Bool) -> ParseStep {
        guard size >= header, size < UInt64(Int64.max) else { return .done }
        if !inMoov, type == "moov" { return descend() }
        if inMoov, type == "mvhd" {
            mode = .mvhd
            return .next(skip: 0, read: Int(min(size - header, 120)))
        }
        mode = .box(inMoov: inMoov)
        return .next(skip: Int64(size - header), read: 8)
    }

    func durationMilliseconds(totalBytes: Int64) -> Int? {
        guard duration > 0, duration != UInt64.max else { return nil }
        return milliseconds(duration, per: timescale)
    }
}

// MARK: WebM / Matroska

/// EBML, walked flat: master elements that matter (Segment, Info, Cluster, BlockGroup) and
/// elements of unknown size are entered, everything else is skipped. `Info/Duration` is used when
/// present; browsers' MediaRecorder leaves it out, so the last block's time (cluster timecode +
/// block offset, plus one frame) is the fallback.
struct EBMLDuration: DurationParser {
    private enum Mode {
        case idFirst
        case idRest(first: UInt8, length: Int)
        case sizeFirst(id: UInt32)
        case sizeRest(id: UInt32, value: UInt64, length: Int)
        case value(id: UInt32)
        case block(rest: Int64)
    }

    private static let segment: UInt32 = 0x1853_8067, info: UInt32 = 0x1549_A966, cluster: UInt32 = 0x1F43_B675
    private static let blockGroup: UInt32 = 0xA0, block: UInt32 = 0xA1, simpleBlock: UInt32 = 0xA3
    private static let timecodeScale: UInt32 = 0x2A_D7B1, duration: UInt32 = 0x4489, clusterTimecode: UInt32 = 0xE7

    private var mode = Mode.idFirst
    private var scale: UInt64 = 1_000_000  // nanoseconds per timecode unit
    private var declared: Double?
    private var clusterTime: Int64 = 0
    private var lastBlock: Int64?
    private var lastStep: Int64 = 0
    private var maxBlock: Int64 = 0

    var firstStep: ParseStep { .next(skip: 0, read: 1) }

    /// Length of a variable-size integer from its first byte (1 + leading zero bits), or nil.
    private static func vintLength(_ first: UInt8, max: Int) -> Int? {
        guard first != 0 else { return nil }
        let length = first.leadingZeroBitCount + 1
        return length <= max ? length : nil
    }

    mutating func consume(_ b: [UInt8], at offset: Int64) -> ParseStep {
        switch mode {
        case .idFirst:
            guard let length = Self.vintLength(b[0], max: 4) else { return .done }
            if length == 1 { return readSize(id: UInt32(b[0])) }
            mode = .idRest(first: b[0], length: length)
            return .next(skip: 0, read: length - 1)
        case .idRest(let first, _):
            return readSize(id: b.reduce(UInt32(first)) { $0 << 8 | UInt32($1) })
        case .sizeFirst(let id):
            guard let length = Self.vintLength(b[0], max: 8) else { return .done }
            let value = UInt64(b[0]) & (0xFF >> UInt64(length))
            if length == 1 { return element(id, size: value, unknown: value == 0x7F) }
            mode = .sizeRest(id: id, value: value, length: length)
            return .next(skip: 0, read: length - 1)
        case .sizeRest(let id, let first, let length):
            let value = b.reduce(first) { $0 << 8 | UInt64($1) }
            return element(id, size: value, unknown: value == (UInt64(1) << UInt64(7 * length)) - 1)
        case .value(let id):
            let unsigned = b.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            switch id {
            case Self.timecodeScale where unsigned > 0: scale = unsigned
            case Self.duration where b.count == 4: declared = Double(Float(bitPattern: UInt32(unsigned)))
            case Self.duration where b.count == 8: declared = Double(bitPattern: unsigned)
            case Self.clusterTimecode: clusterTime = Int64(clamping: unsigned)
            default: break
            }
            return nextElement(skip: 0)
        case .block(let rest):
            if let trackLength = Self.vintLength(b[0], max: 8), b.count >= trackLength + 2 {
                let relative = Int64(Int16(bitPattern: UInt16(b[trackLength]) << 8 | UInt16(b[trackLength + 1])))
                let time = clusterTime + relative
                if let last = lastBlock, time > last { lastStep = time - last }
                lastBlock = time
                maxBlock = max(maxBlock, time)
            }
            return nextElement(skip: rest)
        }
    }

    private mutating func readSize(id: UInt32) -> ParseStep {
        mode = .sizeFirst(id: id)
        return .next(skip: 0, read: 1)
    }

    private mutating func nextElement(skip: Int64) -> ParseStep {
        mode = .idFirst
        return .next(skip: skip, read: 1)
    }

    private mutating func element(_ id: UInt32, size: UInt64, unknown: Bool) -> ParseStep {
        switch id {
        case Self.segment, Self.info, Self.cluster, Self.blockGroup:
            return nextElement(skip: 0)
        case _ where unknown:
            return nextElement(skip: 0)
        case Self.timecodeScale, Self.duration, Self.clusterTimecode:
            guard (1...8).contains(size) else { return nextElement(skip: Int64(clamping: size)) }
            mode = .value(id: id)
            return .next(skip: 0, read: Int(size))
        case Self.simpleBlock, Self.block:
            guard size >= 3, size < UInt64(Int64.max) else { return nextElement(skip: Int64(clamping: size)) }
            let head = Int(min(size, 11))
            mode = .block(rest: Int64(size) - Int64(head))
            return .next(skip: 0, read: head)
        default:
            guard size < UInt64(Int64.max) else { return .done }
            return nextElement(skip: Int64(size))
        }
    }

    func durationMilliseconds(totalBytes: Int64) -> Int? {
        let nanosecondsPerUnit = Double(scale)
        if let declared, declared > 0, declared.isFinite {
            return Int((declared * nanosecondsPerUnit / 1_000_000).rounded())
        }
        guard lastBlock != nil else { return nil }
        return Int((Double(maxBlock + lastStep) * nanosecondsPerUnit / 1_000_000).rounded())
    }
}

// MARK: FLAC

/// `fLaC` followed by STREAMINFO: sample rate and total samples.
struct FLACDuration: DurationParser {
    private var rate: UInt64 = 0
    private var total: UInt64 = 0

    var firstStep: ParseStep { .next(skip: 0, read: 42) }

    mutating func consume(_ b: [UInt8], at offset: Int64) -> ParseStep {
        guard b.ascii(0, 4) == "fLaC", b[4] & 0x7F == 0 else { return .done }
        rate = UInt64(b[18]) << 12 | UInt64(b[19]) << 4 | UInt64(b[20]) >> 4
        total = UInt64(b[21] & 0x0F) << 32 | b.be32(22)
        return .done
    }

    func durationMilliseconds(totalBytes: Int64) -> Int? {
        total > 0 ? milliseconds(total, per: rate) : nil
    }
}
