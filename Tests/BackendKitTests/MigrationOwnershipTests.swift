import AIIMConfiguration
import AIIMPostgres
import CallsCore
import MediaCore
import MessagingCore
import Testing

/// Each service ships its own migrations; they share one `schema_migrations` table.
@Suite struct MigrationOwnershipTests {
    static func all() throws -> [(service: String, migrations: [Migration])] {
        [("messaging", try MessagingService.migrations()), ("media", try MediaService.migrations()),
         ("calls", try CallsService.migrations())]
    }

    @Test func versionsAreUniqueAcrossServicesAndTheFirstThreeKeepTheirPlaces() throws {
        let all = try Self.all()
        let versions = all.flatMap { $0.migrations.map(\.version) }
        #expect(Set(versions).count == versions.count, "\(versions)")
        // Applied by every deployment before migrations had owners; their names are in schema_migrations.
        #expect(all[0].migrations.first?.label == "0001_messaging")
        #expect(all[1].migrations.first?.label == "0002_media")
        #expect(all[2].migrations.first?.label == "0003_calls")
        #expect(all[0].migrations.map(\.version) == [1, 4, 7, 8, 9, 10], "messaging's numbers")
    }

    @Test func everyRequiredVersionIsSomeServicesAndIsAppliedBeforeTheMigrationThatNeedsIt() throws {
        let all = try Self.all()
        let owner = Dictionary(uniqueKeysWithValues: all.flatMap { s in s.migrations.map { ($0.version, s.service) } })
        for (service, migrations) in all {
            for m in migrations {
                for r in m.requires {
                    #expect(owner[r] != nil, "\(m.label) requires \(r), which no service ships")
                    if owner[r] == service { #expect(r < m.version, "\(m.label) requires a later migration of its own") }
                }
            }
        }
        let calls = try CallsService.migrations()
        // 0003's SQL cannot change: its requirement comes from 0003_calls.requires.
        #expect(calls.first { $0.version == 3 }?.requires == [1])
        #expect(calls.first { $0.version == 6 }?.requires == [4])
        #expect(try MediaService.migrations().first { $0.version == 5 }?.requires == [4])
    }

    @Test func theHeaderIsReadFromTheLeadingCommentsOnly() {
        #expect(Migration.declaredRequirements("-- requires: 0001, 0004 (why)\n-- more\nSELECT 1;") == [1, 4])
        #expect(Migration.declaredRequirements("-- a comment\n-- Requires: 7\n\nCREATE TABLE a (id int);") == [7])
        #expect(Migration.declaredRequirements("CREATE TABLE a (id int);\n-- requires: 9") == [])
        #expect(Migration(version: 2, name: "x", sql: "-- requires: 1\nSELECT 1;").requires == [1])
    }

    @Test func aSetThatRequiresItsOwnLaterMigrationIsRefused() {
        #expect(throws: ConfigurationError.self) {
            try Migrator.validate([Migration(version: 1, name: "a", sql: "-- requires: 2\nSELECT 1;"),
                                   Migration(version: 2, name: "b", sql: "SELECT 1;")])
        }
        #expect(throws: ConfigurationError.self) {
            try Migrator.validate([Migration(version: 1, name: "a", sql: ""), Migration(version: 1, name: "b", sql: "")])
        }
    }
}
