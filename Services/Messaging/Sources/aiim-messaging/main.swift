import AIIMBackendKit
import AIIMProtocol
import AIIMServiceKit
import MessagingCore

ProcessBootstrap.runTasksOnEventLoops()

let messaging: MessagingService
do {
    let config = try CommonConfiguration(service: .messaging, requireDatabase: true)
    let registry = ProcessBootstrap.run(service: .messaging, config: config)
    messaging = try buildMessaging(registry: registry)
} catch {
    ServiceMain.refuse("aiim-messaging", error)
}
await ServiceMain.run(messaging.services(), logger: messaging.runtime.logger)
await messaging.runtime.shutdown()
