import Foundation
import Testing

@testable import AIIMS3

/// Presigned GETs with S3's response overrides (`response-content-disposition`,
/// `response-content-type`): the download carries the original filename and type, and the
/// overrides are signed, so a holder of the URL cannot change them.
@Suite("Presigned response overrides")
struct PresignedOverrideTests {
    static let configuration = S3Configuration(
        endpoint: "127.0.0.1:9000", secure: false, accessKey: "AKIDEXAMPLE",
        secretKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", bucket: "aiim-media")

    @Test("query parameters are signed and encoded once, before the X-Amz-* parameters")
    func signedQuery() throws {
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        let query = ["response-content-disposition": "attachment; filename*=UTF-8''voice%20%C3%BC.wav",
                     "response-content-type": "audio/wav"]
        let presigned = try S3Presigner(configuration: Self.configuration).presignedURL(
            method: .get, key: "conversations/c1/media/m1", expires: .seconds(600), query: query, date: date)
        #expect(presigned.url.hasPrefix("http://127.0.0.1:9000/aiim-media/conversations/c1/media/m1?"
            + "response-content-disposition=attachment%3B%20filename%2A%3DUTF-8%27%27voice%2520%25C3%25BC.wav"
            + "&response-content-type=audio%2Fwav&X-Amz-Algorithm=AWS4-HMAC-SHA256"))

        // The same request signed by hand has the same signature.
        let signer = SigV4Signer(credentials: Self.configuration.credentials, region: "us-east-1")
        let request = SigV4Request(
            method: "GET", host: "127.0.0.1:9000", path: "/aiim-media/conversations/c1/media/m1",
            query: query.map { .init($0.key, $0.value) }.sorted { $0.name < $1.name })
        let signature = try signer.presign(request, expires: .seconds(600), date: date)
        #expect(presigned.url.hasSuffix("X-Amz-Signature=\(signature.signature)"))
        #expect(signature.canonicalRequest.contains("response-content-type=audio%2Fwav"))

        // Without the overrides the signature differs: they are covered by it.
        let plain = try S3Presigner(configuration: Self.configuration).presignedURL(
            method: .get, key: "conversations/c1/media/m1", expires: .seconds(600), date: date)
        #expect(!plain.url.hasSuffix("X-Amz-Signature=\(signature.signature)"))
    }

    @Test("live: storage answers with the signed overrides, and refuses the URL once they are altered")
    func liveOverrides() async throws {
        try await LiveS3Tests.withClient { client in
            let key = LiveS3Tests.uniqueKey("voice")
            let bytes = LiveS3Tests.randomBytes(5000)
            try await client.putObject(key, data: Data(bytes), contentType: "application/octet-stream")
            let disposition = "attachment; filename=\"voice _.wav\"; filename*=UTF-8''voice%20%C3%BC.wav"
            let presigned = try client.presignedURL(
                method: .get, key: key, expires: .seconds(300),
                query: ["response-content-disposition": disposition, "response-content-type": "audio/wav"])
            let headers = FileManager.default.temporaryDirectory.appendingPathComponent("aiim-hdr-\(UUID())")
            let body = FileManager.default.temporaryDirectory.appendingPathComponent("aiim-body-\(UUID())")
            defer { for f in [headers, body] { try? FileManager.default.removeItem(at: f) } }
            #expect(try SystemCurl.run(["-o", body.path, "-D", headers.path, presigned.url]) == 200)
            #expect(try Data(contentsOf: body) == Data(bytes))
            let text = try String(contentsOf: headers, encoding: .utf8).lowercased()
            #expect(text.contains("content-type: audio/wav"), "\(text)")
            #expect(text.contains("content-disposition: \(disposition.lowercased())"), "\(text)")

            let tampered = presigned.url.replacingOccurrences(of: "audio%2Fwav", with: "text%2Fhtml")
            #expect(try SystemCurl.run(["-o", "/dev/null", tampered]) == 403)
            try await client.deleteObject(key)
        }
    }
}
