import AIIMProtocol
import Foundation
import Hummingbird

/// Reads `Authorization: Bearer <jwt or API key>` into `context.identity`; a malformed header
/// or an invalid token is refused with 401. REST never reads `?token=` (tokens do not belong in
/// access logs). Routes that need an identity live in an `AuthenticatedContext` group. The check
/// goes through the `CredentialGuard` (failed attempts are limited per client address).
struct AuthMiddleware: RouterMiddleware {
    let credentials: CredentialGuard

    func handle(
        _ request: Request, context: AIIMRequestContext, next: (Request, AIIMRequestContext) async throws -> Response
    ) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw AIIMError(.unauthorized, "Authorization must be 'Bearer <token>'")
            }
            let client = credentials.clientAddress(peer: context.channel.remoteAddress, headers: request.headers)
            context.identity = try await credentials.identity(for: String(parts[1]).trimmingCharacters(in: .whitespaces),
                                                              client: client)
        }
        return try await next(request, context)
    }
}

/// Sets the largest body a route may decode (`MAX_BODY_BYTES`).
struct BodyLimitMiddleware: RouterMiddleware {
    let maxBodyBytes: Int

    func handle(
        _ request: Request, context: AIIMRequestContext, next: (Request, AIIMRequestContext) async throws -> Response
    ) async throws -> Response {
        var context = context
        context.maxUploadSize = maxBodyBytes
        return try await next(request, context)
    }
}
