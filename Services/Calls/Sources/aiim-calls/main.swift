import AIIMBackendKit
import AIIMServiceKit
import CallsCore

ProcessBootstrap.runTasksOnEventLoops()  // first, on the main thread, before any await
await BackendMain.run(CallsService.self)
