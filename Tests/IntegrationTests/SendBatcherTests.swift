import AIIMJSON
@testable import AIIMPostgres
import AIIMProtocol
import Foundation
@testable import MessagingCore
import NIOConcurrencyHelpers
import Testing

/// The batcher alone (no servers): concurrent sends share writes, each gets its own answer, and a
/// failed write sends everyone the right way.
@Suite struct SendBatcherTests {
    static func pending(_ i: Int) -> PendingSend {
        PendingSend(messageID: "m\(i)", conversationID: "c", tenantID: "t", senderID: "u", kind: "text",
                    content: .object(["text": .string("\(i)")]), clientMsgID: "k\(i)", trace: nil)
    }

    static func stored(_ p: PendingSend, seq: Int64) -> StoredSend {
        let message = MessageDTO(messageID: p.messageID, conversationID: p.conversationID, senderID: p.senderID,
                                 type: p.kind, content: p.content, createdAt: Date(), seq: seq,
                                 replyTo: nil, clientMsgID: p.clientMsgID)
        return StoredSend(result: SendResult(message: message, duplicate: false), messageJSON: (try? JSONCoding.encode(message)) ?? [])
    }

    @Test func concurrentSendsShareWritesAndEachGetsItsOwnMessage() async throws {
        let batches = NIOLockedValueBox<[Int]>([])
        let batcher = SendBatcher { batch in
            batches.withLockedValue { $0.append(batch.count) }
            try await Task.sleep(for: .milliseconds(20))  // a commit takes a while; others gather meanwhile
            return Dictionary(uniqueKeysWithValues: batch.enumerated().map { ($1.messageID, Self.stored($1, seq: Int64($0))) })
        }
        let results = try await withThrowingTaskGroup(of: (Int, StoredSend?).self) { g in
            for i in 0..<100 { g.addTask { (i, try await batcher.submit(Self.pending(i))) } }
            return try await g.reduce(into: [Int: StoredSend?]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 100)
        for (i, r) in results {
            #expect(r?.result.message.messageID == "m\(i)")
            // The reply payload is SendResult's shape and reads back as the same message.
            let reply = try JSONCoding.decode(SendResult.self, from: try #require(r).replyPayload)
            #expect(reply.message.messageID == "m\(i)" && reply.message.content == r?.result.message.content && !reply.duplicate)
            #expect(abs(reply.message.createdAt.timeIntervalSince(try #require(r).result.message.createdAt)) < 0.000_01)
        }
        let sizes = batches.withLockedValue { $0 }
        #expect(sizes.reduce(0, +) == 100)
        #expect(sizes.count < 50, "100 concurrent sends took \(sizes.count) writes")
    }

    @Test func aMessageTheWriteDidNotStoreGoesTheOneByOneWay() async throws {
        let batcher = SendBatcher { batch in
            Dictionary(uniqueKeysWithValues: batch.filter { $0.messageID == "m0" }.map { ($0.messageID, Self.stored($0, seq: 1)) })
        }
        #expect(try await batcher.submit(Self.pending(0))?.result.message.seq == 1)
        #expect(try await batcher.submit(Self.pending(1)) == nil)
    }

    @Test func aStatementErrorSendsEveryoneTheOneByOneWayAndAConnectionErrorFailsThem() async throws {
        let unique = SendBatcher { _ in
            throw PostgresError(sqlState: "23505", description: "duplicate key", isConnectionError: false)
        }
        #expect(try await unique.submit(Self.pending(0)) == nil)
        let down = SendBatcher { _ in
            throw PostgresError(sqlState: nil, description: "server closed the connection", isConnectionError: true)
        }
        await #expect(throws: PostgresError.self) { try await down.submit(Self.pending(0)) }
    }
}

/// The batch insert against a real PostgreSQL whose tables are empty, as on a new deployment.
@Suite struct BatchInsertPlanTests {
    init() { TestLog.bootstrap() }

    /// A prepared statement keeps the generic plan it got when the tables were empty. The
    /// idempotency and membership checks used to become hash joins over a sequential scan of
    /// `im_messages`: every batch then read the whole table, and sending slowed down as it grew
    /// (until autovacuum's next ANALYZE). They must stay index lookups whatever the statistics.
    @Test(arguments: [false, true])
    func theGenericPlanOnEmptyTablesLooksRowsUpByIndex(analysedWhileEmpty: Bool) async throws {
        let pg = try PostgresClient(url: try await TestEnv.isolatedDatabaseURL(schema: uniqueName("plan")), poolSize: 1, logger: TestLog.logger)
        _ = try await Migrator.run(try MessagingService.migrations(), on: pg, logger: TestLog.logger)
        // Autovacuum may analyse the tables while they are still empty: then they look free to scan.
        if analysedWhileEmpty { try await pg.query("ANALYZE conversations, conversation_members, im_messages") }
        try await pg.query("SET plan_cache_mode = force_generic_plan")
        try await pg.query("PREPARE batch_insert AS " + SendBatchWriter.insertSQL)
        let plan = try await pg.query(#"EXPLAIN EXECUTE batch_insert('{m}', '{c}', '{t}', '{u}', '{text}', '{"\"x\""}', '{k}')"#)
            .rows.compactMap { $0.optional("QUERY PLAN", as: String.self) }
        #expect(plan.contains { $0.contains("Index Scan using im_messages_idempotent") }, "\(plan)")
        #expect(plan.contains { $0.contains("conversation_members_pkey") }, "\(plan)")
        #expect(!plan.contains { $0.contains("Seq Scan") }, "\(plan)")
        await pg.shutdown()
    }
}
