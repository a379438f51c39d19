/// The OpenAPI document served at `/openapi.json` (kept in step with docs/API.md).
enum OpenAPI {
    static let document = #"{"openapi":"3.0.3","info":{"title":"AIIM","version":"2.0.0"},"paths":{}}"#
}
