import AIIMBackendKit
import AIIMProtocol
import AIIMServiceKit
import CallsCore
import ServiceLifecycle

ProcessBootstrap.runTasksOnEventLoops()

let service: CallsService
let services: [any Service]
do {
    let config = try CommonConfiguration(service: .calls, requireDatabase: true)
    let registry = ProcessBootstrap.run(service: .calls, config: config)
    service = try buildCalls(registry: registry)
    services = try service.services()
} catch {
    ServiceMain.refuse("aiim-calls", error)
}
await ServiceMain.run(services, logger: service.runtime.logger)
await service.runtime.shutdown()
