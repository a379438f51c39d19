import AIIMBackendKit
import AIIMServiceKit
import MediaCore

ProcessBootstrap.runTasksOnEventLoops()  // first, on the main thread, before any await
await BackendMain.run(MediaService.self)
