import AIIMBackendKit
import AIIMProtocol
import AIIMServiceKit
import MediaCore

ProcessBootstrap.runTasksOnEventLoops()

let service: MediaService
do {
    let config = try CommonConfiguration(service: .media, requireDatabase: true)
    let registry = ProcessBootstrap.run(service: .media, config: config)
    service = try buildMedia(registry: registry)
} catch {
    ServiceMain.refuse("aiim-media", error)
}
await ServiceMain.run(service.services(), logger: service.runtime.logger)
await service.shutdown()
