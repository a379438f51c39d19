import AIIMBackendKit
import AIIMProtocol
import AIIMServiceKit
import MediaCore
import ServiceLifecycle

ProcessBootstrap.runTasksOnEventLoops()

let service: MediaService
let services: [any Service]
do {
    let config = try CommonConfiguration(service: .media, requireDatabase: true)
    let registry = ProcessBootstrap.run(service: .media, config: config)
    service = try buildMedia(registry: registry)
    services = try service.services()
} catch {
    ServiceMain.refuse("aiim-media", error)
}
await ServiceMain.run(services, logger: service.runtime.logger)
await service.shutdown()
