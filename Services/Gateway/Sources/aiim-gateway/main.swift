
import AIIMProtocol
import AIIMServiceKit
import Foundation
import GatewayCore

ProcessBootstrap.runTasksOnEventLoops()

// `aiim-gateway mint-token --user U [--tenant T] [--ttl SECONDS]` prints a development token
// signed with JWT_SECRET; without arguments the gateway serves.
let args = CommandLine.arguments
if args.count > 1, args[1] == "mint-token" {
    exit(await MintToken.run(Array(args.dropFirst(2))))
}

let gateway: Gateway
do {
    let config = try GatewayConfiguration()
    let registry = ProcessBootstrap.run(service: .gateway, config: config.common)
    gateway = try await Gateway(config: config, registry: registry)
} catch {
    ServiceMain.refuse("aiim-gateway", error)
}
await ServiceMain.run(gateway.services(), logger: gateway.logger)
await gateway.shutdown()
