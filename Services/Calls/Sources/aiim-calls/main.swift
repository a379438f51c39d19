import AIIMBackendKit
import AIIMProtocol
import AIIMServiceKit
import CallsCore

ProcessBootstrap.runTasksOnEventLoops()

let service: CallsService
do {
    let config = try CommonConfiguration(service: .calls, requireDatabase: true)
    let registry = ProcessBootstrap.run(service: .calls, config: config)
    service = try buildCalls(registry: registry)
} catch {
    ServiceMain.refuse("aiim-calls", error)
}
await ServiceMain.run(service.services(), logger: service.runtime.logger)
await service.runtime.shutdown()
