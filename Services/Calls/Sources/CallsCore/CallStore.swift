import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import Foundation

/// Outbox rows written by a transaction, to publish after it committed.
typealias Outbox = [(id: Int64, item: OutboxItem)]

/// Calls in PostgreSQL. Every change runs in one transaction that locks the call row
/// (`FOR UPDATE`), applies `CallStateMachine` with the database's clock, and writes the
/// resulting events to `call_outbox`, so replicas never disagree and no event is lost.
/// All closures run on the PostgreSQL pool's threads, never on the cooperative pool.
/// Membership comes from messaging's read-only view `messaging_members`, never its tables.
struct CallStore: Sendable {
    let postgres: PostgresClient
    let config: CallsConfiguration
    let ice: ICEConfigurationBuilder

    /// How long the writer of an outbox row has to publish it before the relay does.
    static let outboxClaimSeconds = 10

    static let columnNames = [
        "call_id", "tenant_id", "conversation_id", "initiator_id", "callee_id", "call_type", "status", "version",
        "start_time", "answer_time", "end_time", "duration_sec", "ended_by", "answered_connection", "ring_deadline",
        "disconnect_deadline",
    ]
    static let columns = columnNames.joined(separator: ", ")
    static func columns(_ alias: String) -> String { columnNames.map { "\(alias).\($0)" }.joined(separator: ", ") }
    static let activeList = "('initiated', 'ringing', 'answered')"

    enum Started: Sendable {
        case initiated(CallRecord, Outbox)
        /// The callee was in another call: recorded as `busy`, already final.
        case busy(CallRecord, Outbox)
    }

    // MARK: Transitions

    /// Creates a call (see `InitiateCall`). Retries when a concurrent initiate won a unique
    /// index first, so the loser sees that call and answers `conflict` or `busy`.
    func initiate(_ cmd: InitiateCall) async throws -> Started {
        for _ in 1...3 {
            do {
                return try await postgres.withTransaction { conn in try initiate(conn, cmd) }
            } catch let e as PostgresError where e.isUniqueViolation {
                continue
            }
        }
        throw AIIMError.conflict("A call is already active in this conversation")
    }

    private func initiate(_ conn: PostgresConnection, _ cmd: InitiateCall) throws -> Started {
        let actor = cmd.actor
        let now: Date = try conn.query("SELECT now() AS db_now").rows[0].decode("db_now")
        let members: [String] = try conn.query(
            "SELECT user_id FROM messaging_members WHERE conversation_id = $1 AND tenant_id = $2",
            [cmd.conversationID, actor.tenantID]
        ).rows.map { try $0.decode("user_id") }
        guard members.contains(actor.userID) else { throw AIIMError.forbidden() }
        let callee: String
        if let wanted = cmd.calleeID {
            guard wanted != actor.userID else { throw AIIMError.validation("to_user_id must be another member, not yourself") }
            guard members.contains(wanted) else { throw AIIMError.validation("to_user_id is not a member of this conversation") }
            callee = wanted
        } else {
            let others = members.filter { $0 != actor.userID }
            guard others.count == 1 else {
                throw AIIMError.validation("to_user_id is required in a conversation with \(members.count) members")
            }
            callee = others[0]
        }
        if try conn.query("SELECT 1 FROM calls WHERE conversation_id = $1 AND status IN \(Self.activeList)",
                          [cmd.conversationID]).first != nil {
            throw AIIMError.conflict("A call is already active in this conversation")
        }
        // One statement (one snapshot) for both parties. A call of either party in this very
        // conversation (it committed since the check above, e.g. both called each other at once)
        // is the same conflict, not `busy`.
        let inCall = try conn.query("""
            SELECT p.user_id, c.conversation_id FROM call_participants p JOIN calls c ON c.call_id = p.call_id
            WHERE p.tenant_id = $1 AND p.user_id IN ($2, $3) AND p.active
            """, [actor.tenantID, actor.userID, callee]).rows.map {
                (user: try $0.decode("user_id", as: String.self), conversation: try $0.decode("conversation_id", as: String.self))
            }
        if inCall.contains(where: { $0.conversation == cmd.conversationID }) {
            throw AIIMError.conflict("A call is already active in this conversation")
        }
        if inCall.contains(where: { $0.user == actor.userID }) {
            throw AIIMError.conflict("you are already in another call")
        }
        let busy = inCall.contains { $0.user == callee }
        let call = CallRecord(
            callID: "call_\(UUIDs.make())", tenantID: actor.tenantID, conversationID: cmd.conversationID,
            initiatorID: actor.userID, calleeID: callee, callType: cmd.callType, status: busy ? .busy : .initiated,
            version: 1, startTime: now, answerTime: nil, endTime: busy ? now : nil, durationSec: nil, endedBy: nil,
            answeredConnection: nil, ringDeadline: now.addingTimeInterval(config.ringTimeout), disconnectDeadline: nil)
        try conn.query("""
            INSERT INTO calls (call_id, tenant_id, conversation_id, initiator_id, callee_id, call_type, status, version,
                               start_time, end_time, ring_deadline)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            """, [call.callID, call.tenantID, call.conversationID, call.initiatorID, call.calleeID, call.callType.rawValue,
                  call.status.rawValue, call.version, call.startTime, call.endTime, call.ringDeadline])
        try conn.query("""
            INSERT INTO call_participants (call_id, tenant_id, user_id, role, active)
            VALUES ($1, $2, $3, 'caller', $5), ($1, $2, $4, 'callee', $5)
            """, [call.callID, call.tenantID, call.initiatorID, call.calleeID, !busy])
        let outbox = try write(conn, call.callID, CallEvents.created(call, calleeICE: ice.configuration(for: callee)))
        return busy ? .busy(call, outbox) : .initiated(call, outbox)
    }

    /// Applies `action` by `actor` to a call of the actor's tenant. Returns the call (unchanged
    /// when the action was a repeat) and what to publish.
    func act(_ action: CallAction, callID: String, actor: Actor) async throws -> (CallRecord, Outbox) {
        try await postgres.withTransaction { conn in
            let rows = try conn.query(
                "SELECT \(Self.columns), now() AS db_now FROM calls WHERE call_id = $1 AND tenant_id = $2 FOR UPDATE",
                [callID, actor.tenantID]).rows
            guard let row = rows.first else { throw AIIMError.notFound("Call not found") }
            let call = try Self.record(row)
            guard let next = try CallStateMachine.apply(action, to: call, actor: actor.userID, now: try row.decode("db_now")) else {
                return (call, [])
            }
            try save(conn, next)
            return (next, try write(conn, callID, CallEvents.transition(from: call, to: next, actor: actor)))
        }
    }

    /// The timer: ends calls whose ring deadline (missed) or disconnect deadline (failed)
    /// passed, and answered calls older than `CALL_MAX_DURATION_SECONDS` (completed). Rows
    /// another replica (or a command) holds are skipped and taken next time.
    func expireDue(limit: Int = 50) async throws -> [(CallRecord, Outbox)] {
        try await postgres.withTransaction { conn in
            let rows = try conn.query("""
                SELECT \(Self.columns), now() AS db_now FROM calls
                WHERE (status IN ('initiated', 'ringing') AND ring_deadline <= now())
                   OR (status IN \(Self.activeList) AND disconnect_deadline <= now())
                   OR (status IN \(Self.activeList) AND status = 'answered'
                       AND answer_time + make_interval(secs => $2) <= now())
                ORDER BY call_id LIMIT $1 FOR UPDATE SKIP LOCKED
                """, [limit, config.maxDuration]).rows
            var out: [(CallRecord, Outbox)] = []
            for row in rows {
                let call = try Self.record(row)
                let now: Date = try row.decode("db_now")
                let lost = call.disconnectDeadline.map { $0 <= now } ?? false
                let action: CallAction = lost ? .disconnectTimeout
                    : call.status == .answered ? .maxDuration(seconds: config.maxDuration) : .ringTimeout
                guard let next = try CallStateMachine.apply(action, to: call, actor: nil, now: now) else { continue }
                try save(conn, next)
                out.append((next, try write(conn, call.callID, CallEvents.transition(from: call, to: next, actor: nil))))
            }
            return out
        }
    }

    /// The user's last WebSocket closed (`disconnected`) or one opened again. Starts or stops
    /// the disconnect grace of the user's active calls. While a call rings, only the caller's
    /// connection matters: an offline callee is what the ring timeout is for.
    func presence(_ actor: Actor, at: Date, disconnected: Bool) async throws -> Outbox {
        try await postgres.withTransaction { conn in
            let rows = try conn.query("""
                SELECT \(Self.columns("c")), p.role, p.disconnected_at IS NOT NULL AS was_disconnected
                FROM call_participants p JOIN calls c ON c.call_id = p.call_id
                WHERE p.tenant_id = $1 AND p.user_id = $2 AND p.active AND (p.presence_at IS NULL OR p.presence_at < $3)
                FOR UPDATE OF c, p
                """, [actor.tenantID, actor.userID, at]).rows
            var outbox: Outbox = []
            for row in rows {
                let call = try Self.record(row)
                let role: String = try row.decode("role")
                let wasDisconnected: Bool = try row.decode("was_disconnected")
                let counts = disconnected && (call.status == .answered || role == "caller")
                let changes = counts != wasDisconnected
                try conn.query("""
                    UPDATE call_participants SET presence_at = $3,
                        disconnected_at = CASE WHEN $4 THEN coalesce(disconnected_at, now()) ELSE NULL END
                    WHERE call_id = $1 AND user_id = $2
                    """, [call.callID, actor.userID, at, counts])
                guard changes else { continue }
                try conn.query("""
                    UPDATE calls SET disconnect_deadline =
                        (SELECT min(disconnected_at) FROM call_participants WHERE call_id = $1) + make_interval(secs => $2)
                    WHERE call_id = $1
                    """, [call.callID, config.disconnectGrace])
                outbox += try write(conn, call.callID, [
                    CallEvents.presence(call, userID: actor.userID, disconnected: counts, grace: config.disconnectGrace),
                ])
            }
            return outbox
        }
    }

    /// Participants of answered calls who are not already counted as disconnected: the users
    /// whose presence the timer checks.
    func connectedParticipants(limit: Int = 1000) async throws -> [Actor] {
        try await postgres.withConnection { conn in
            try conn.query("""
                SELECT DISTINCT p.tenant_id, p.user_id FROM call_participants p JOIN calls c ON c.call_id = p.call_id
                WHERE p.active AND p.disconnected_at IS NULL AND c.status = 'answered'
                LIMIT $1
                """, [limit]).rows.map { Actor(userID: try $0.decode("user_id"), tenantID: try $0.decode("tenant_id")) }
        }
    }

    // MARK: Reads

    /// A call of the actor's tenant that the actor may see: a participant, or a member of its
    /// conversation.
    func call(_ callID: String, for actor: Actor) async throws -> CallRecord {
        try await postgres.withConnection { conn in
            let rows = try conn.query("""
                SELECT \(Self.columns),
                       EXISTS (SELECT 1 FROM messaging_members m WHERE m.conversation_id = calls.conversation_id
                               AND m.user_id = $3 AND m.tenant_id = $2) AS is_member
                FROM calls WHERE call_id = $1 AND tenant_id = $2
                """, [callID, actor.tenantID, actor.userID]).rows
            guard let row = rows.first else { throw AIIMError.notFound("Call not found") }
            let call = try Self.record(row)
            let isMember: Bool = try row.decode("is_member")
            guard call.isParticipant(actor.userID) || isMember else {
                throw AIIMError.forbidden("Not authorized to view this call")
            }
            return call
        }
    }

    /// A page of a conversation's calls (newest first) with the conversation's total.
    func history(_ cmd: ListCallHistory) async throws -> CallHistoryPage {
        try await postgres.withConnection { conn in
            let member = try conn.query(
                "SELECT 1 FROM messaging_members WHERE conversation_id = $1 AND tenant_id = $2 AND user_id = $3",
                [cmd.conversationID, cmd.actor.tenantID, cmd.actor.userID]).first
            guard member != nil else { throw AIIMError.forbidden() }
            let total: Int = try conn.query(
                "SELECT count(*) AS n FROM calls WHERE conversation_id = $1 AND tenant_id = $2",
                [cmd.conversationID, cmd.actor.tenantID]).rows[0].decode("n")
            let calls = try conn.query("""
                SELECT \(Self.columns) FROM calls WHERE conversation_id = $1 AND tenant_id = $2
                ORDER BY start_time DESC, call_id DESC LIMIT $3 OFFSET $4
                """, [cmd.conversationID, cmd.actor.tenantID, cmd.limit, cmd.offset]).rows.map { try Self.record($0).dto }
            return CallHistoryPage(conversationID: cmd.conversationID, calls: calls, total: total, limit: cmd.limit,
                                   offset: cmd.offset)
        }
    }

    // MARK: Outbox

    /// Rows whose writer did not publish them in time (crash, Redis outage), claimed afresh.
    func claimStaleOutbox(limit: Int = 100) async throws -> Outbox {
        let rows = try await postgres.withTransaction { conn in
            try conn.query("""
                UPDATE call_outbox SET claimed_until = now() + make_interval(secs => $2)
                WHERE id IN (SELECT id FROM call_outbox WHERE claimed_until < now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
                RETURNING id, body
                """, [limit, Self.outboxClaimSeconds]).rows
        }
        let outbox: Outbox = try rows.map { row in
            let id: Int64 = try row.decode("id")
            let body: String = try row.decode("body")
            return (id: id, item: try JSONCoding.decode(OutboxItem.self, from: Array(body.utf8)))
        }
        return outbox.sorted { $0.id < $1.id }
    }

    func deleteOutbox(_ ids: [Int64]) async throws {
        try await postgres.query("DELETE FROM call_outbox WHERE id = ANY($1::bigint[])", [ids.map { String($0) }])
    }

    // MARK: Rows

    private func write(_ conn: PostgresConnection, _ callID: String, _ items: [OutboxItem]) throws -> Outbox {
        guard !items.isEmpty else { return [] }
        let bodies = try items.map { String(decoding: try JSONCoding.encode($0), as: UTF8.self) }
        let ids: [Int64] = try conn.query("""
            INSERT INTO call_outbox (call_id, body, claimed_until)
            SELECT $1, b::jsonb, now() + make_interval(secs => $3) FROM unnest($2::text[]) WITH ORDINALITY AS t(b, n) ORDER BY n
            RETURNING id
            """, [callID, bodies, Self.outboxClaimSeconds]).rows.map { try $0.decode("id") }
        return Array(zip(ids.sorted(), items)).map { (id: $0.0, item: $0.1) }
    }

    private func save(_ conn: PostgresConnection, _ call: CallRecord) throws {
        try conn.query("""
            UPDATE calls SET status = $2, version = $3, answer_time = $4, end_time = $5, duration_sec = $6,
                ended_by = $7, answered_connection = $8, disconnect_deadline = $9
            WHERE call_id = $1
            """, [call.callID, call.status.rawValue, call.version, call.answerTime, call.endTime, call.durationSec,
                  call.endedBy, call.answeredConnection, call.disconnectDeadline])
        if !call.status.isActive {
            try conn.query("UPDATE call_participants SET active = false, disconnected_at = NULL WHERE call_id = $1", [call.callID])
        }
    }

    static func record(_ row: PostgresRow) throws -> CallRecord {
        guard let type = CallType(rawValue: try row.decode("call_type")),
              let status = CallStatus(rawValue: try row.decode("status")) else {
            throw AIIMError.internalError
        }
        return CallRecord(
            callID: try row.decode("call_id"), tenantID: try row.decode("tenant_id"),
            conversationID: try row.decode("conversation_id"), initiatorID: try row.decode("initiator_id"),
            calleeID: try row.decode("callee_id"), callType: type, status: status, version: try row.decode("version"),
            startTime: try row.decode("start_time"), answerTime: row.optional("answer_time"),
            endTime: row.optional("end_time"), durationSec: row.optional("duration_sec"), endedBy: row.optional("ended_by"),
            answeredConnection: row.optional("answered_connection"), ringDeadline: try row.decode("ring_deadline"),
            disconnectDeadline: row.optional("disconnect_deadline"))
    }
}
