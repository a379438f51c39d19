import AIIMBackendKit
import AIIMServiceKit
import MessagingCore

ProcessBootstrap.runTasksOnEventLoops()  // first, on the main thread, before any await
await BackendMain.run(MessagingService.self)
