import AIIMBackendKit
import AIIMProtocol
import AIIMServiceKit
import MessagingCore
import ServiceLifecycle

ProcessBootstrap.runTasksOnEventLoops()

let messaging: MessagingService
let services: [any Service]
do {
    let config = try CommonConfiguration(service: .messaging, requireDatabase: true)
    let registry = ProcessBootstrap.run(service: .messaging, config: config)
    messaging = try buildMessaging(registry: registry)
    services = try messaging.services()
} catch {
    ServiceMain.refuse("aiim-messaging", error)
}
await ServiceMain.run(services, logger: messaging.runtime.logger)
await messaging.runtime.shutdown()
