import AIIMBackendKit
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import Foundation

/// Conversations and their members.
extension MessagingService {
    /// The member's role, or `forbidden` (also for conversations that do not exist, so ids
    /// cannot be probed).
    @discardableResult
    func requireMember(_ actor: Actor, _ conversationID: String) async throws -> String {
        let rows = try await postgres.query(
            "SELECT role FROM conversation_members WHERE conversation_id = $1 AND user_id = $2 AND tenant_id = $3",
            [conversationID, actor.userID, actor.tenantID])
        guard let role: String = rows.first?.optional("role") else { throw AIIMError.forbidden() }
        return role
    }

    /// Bot users (service accounts) among `ids`: they join as `assistant`.
    func botUsers(_ ids: [String], tenant: String) async throws -> Set<String> {
        let rows = try await postgres.query(
            "SELECT DISTINCT user_id FROM api_keys WHERE tenant_id = $1 AND user_id = ANY($2::text[]) AND revoked_at IS NULL",
            [tenant, ids])
        return Set(rows.rows.compactMap { $0.optional("user_id", as: String.self) })
    }

    func create(_ cmd: CreateConversation) async throws -> ConversationDTO {
        let actor = cmd.actor
        guard cmd.kind == "direct" || cmd.kind == "group" else { throw AIIMError.validation("type must be direct or group") }
        guard !cmd.memberIDs.isEmpty else { throw AIIMError.validation("member_ids needs at least one user") }
        guard cmd.memberIDs.count <= Validation.maxMembers else {
            throw AIIMError.validation("at most \(Validation.maxMembers) members")
        }
        if let name = cmd.name, name.count > Validation.maxNameLength {
            throw AIIMError.validation("name is longer than \(Validation.maxNameLength) characters")
        }
        let reasoning = try Self.reasoningRule(cmd.settings) ?? "shown"
        // The caller is always a member and the owner; duplicates are dropped, order kept.
        var members = [actor.userID]
        for id in cmd.memberIDs {
            let v = try Validation.id(id, field: "member_ids")
            if !members.contains(v) { members.append(v) }
        }
        var directKey: String?
        if cmd.kind == "direct" {
            guard members.count == 2 else { throw AIIMError.validation("a direct conversation has exactly two members") }
            directKey = members.sorted().joined(separator: "\n")
        }
        let bots = try await botUsers(members, tenant: actor.tenantID)
        let conversationID = UUIDs.make()
        let (members_, directKey_) = (members, directKey)
        let created: (ConversationDTO, Bool) = try await postgres.withTransaction { conn in
            let inserted = try conn.query("""
                INSERT INTO conversations (conversation_id, tenant_id, type, name, direct_key, created_by, ai_reasoning)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (tenant_id, direct_key) WHERE direct_key IS NOT NULL DO NOTHING
                RETURNING conversation_id, type, name, created_at, updated_at, last_seq, ai_reasoning
                """, [conversationID, actor.tenantID, cmd.kind, cmd.name, directKey_, actor.userID, reasoning])
            if let row = inserted.first {
                for (i, user) in members_.enumerated() {
                    let role = i == 0 ? "owner" : (bots.contains(user) ? "assistant" : "member")
                    try conn.query("""
                        INSERT INTO conversation_members (conversation_id, user_id, tenant_id, role) VALUES ($1, $2, $3, $4)
                        """, [conversationID, user, actor.tenantID, role])
                }
                return (try Rows.conversation(row), true)
            }
            // The direct conversation of this pair already exists: return it.
            let existing = try conn.query(
                "SELECT \(Rows.conversationColumns) FROM conversations c WHERE tenant_id = $1 AND direct_key = $2",
                [actor.tenantID, directKey_])
            return (try Rows.conversation(try existing.first.orThrow()), false)
        }
        var dto = try await conversation(created.0.conversationID, actor: actor)
        dto.unreadCount = dto.unreadCount ?? 0
        if created.1 {
            try await runtime.publish(DeliveryEvent(
                tenantID: actor.tenantID, recipients: members,
                frame: conversationEvent(dto.conversationID, "conversation.created", ["conversation": try JSONValue(encoding: dto)]),
                membership: MembershipChange(conversationID: dto.conversationID, joined: members, left: [], seqBefore: 0)))
        }
        return dto
    }

    /// One conversation with its members, for a member.
    func conversation(_ id: String, actor: Actor) async throws -> ConversationDTO {
        let role = try await requireMember(actor, id)
        let rows = try await postgres.query(
            "SELECT \(Rows.conversationColumns) FROM conversations c WHERE c.conversation_id = $1", [id])
        var dto = try Rows.conversation(try rows.first.orThrow())
        let members = try await postgres.query("""
            SELECT user_id, role, last_read_seq, last_delivered_seq FROM conversation_members
            WHERE conversation_id = $1 ORDER BY joined_at, user_id
            """, [id])
        dto.members = try members.rows.map {
            MemberDTO(userID: try $0.decode("user_id"), role: try $0.decode("role"),
                      lastReadSeq: try $0.decode("last_read_seq"), lastDeliveredSeq: try $0.decode("last_delivered_seq"))
        }
        dto.role = role
        return dto
    }

    /// The caller's conversations, most recently active first, with the last message and the
    /// number of messages from others after the caller's read cursor.
    func list(_ cmd: ListConversations) async throws -> ConversationList {
        let limit = try Validation.limit(cmd.limit, default: 50)
        var beforeTS: String?
        var beforeID: String?
        if let cursor = cmd.before {
            let parts = cursor.split(separator: "|", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw AIIMError.validation("invalid cursor") }
            beforeTS = try Validation.cursorTimestamp(parts[0])
            beforeID = try Validation.id(parts[1], field: "cursor")
        }
        let rows = try await postgres.query("""
            SELECT \(Rows.conversationColumns), c.updated_at::text AS cursor_ts, m.role,
                   (SELECT count(*) FROM im_messages x WHERE x.conversation_id = c.conversation_id
                        AND x.seq > m.last_read_seq AND x.sender_id <> $1 AND x.deleted_at IS NULL) AS unread_count,
                   \(Rows.messageColumns("lm", prefix: "lm_"))
            FROM conversation_members m
            JOIN conversations c ON c.conversation_id = m.conversation_id
            LEFT JOIN LATERAL (
                SELECT * FROM im_messages x WHERE x.conversation_id = c.conversation_id ORDER BY x.seq DESC LIMIT 1
            ) lm ON true
            WHERE m.user_id = $1 AND m.tenant_id = $2
              AND ($3::timestamptz IS NULL OR (c.updated_at, c.conversation_id) < ($3::timestamptz, $4::text))
            ORDER BY c.updated_at DESC, c.conversation_id DESC
            LIMIT $5
            """, [cmd.actor.userID, cmd.actor.tenantID, beforeTS, beforeID, limit + 1])
        var out: [ConversationDTO] = []
        for row in rows.rows.prefix(limit) {
            var dto = try Rows.conversation(row)
            dto.role = row.optional("role")
            dto.unreadCount = row.optional("unread_count", as: Int.self) ?? 0
            if row.optional("lm_message_id", as: String.self) != nil { dto.lastMessage = try Rows.message(row, prefix: "lm_") }
            out.append(dto)
        }
        var next: String?
        if rows.rows.count > limit, let last = rows.rows.prefix(limit).last,
           let ts: String = last.optional("cursor_ts"), let id: String = last.optional("conversation_id") {
            next = "\(ts)|\(id)"
        }
        return ConversationList(conversations: out, nextCursor: next)
    }

    /// `settings.ai_reasoning`, checked; nil when not given.
    static func reasoningRule(_ settings: ConversationSettings?) throws -> String? {
        guard let rule = settings?.aiReasoning else { return nil }
        guard ConversationSettings.reasoningRules.contains(rule) else {
            throw AIIMError.validation("settings.ai_reasoning must be shown or hidden")
        }
        return rule
    }

    /// Owners and admins rename a group or change its settings; every member's devices get
    /// `conversation.updated` with the conversation as it is now.
    func update(_ cmd: UpdateConversation) async throws -> ConversationDTO {
        let id = try Validation.id(cmd.conversationID, field: "conversation_id")
        let reasoning = try Self.reasoningRule(cmd.settings)
        guard cmd.name != nil || reasoning != nil else { throw AIIMError.validation("nothing to change: give name or settings") }
        if let name = cmd.name, name.count > Validation.maxNameLength {
            throw AIIMError.validation("name is longer than \(Validation.maxNameLength) characters")
        }
        let role = try await requireMember(cmd.actor, id)
        guard role == "owner" || role == "admin" else { throw AIIMError.forbidden("only the owner or an admin can change the conversation") }
        if cmd.name != nil {
            let kind = try await postgres.query("SELECT type FROM conversations WHERE conversation_id = $1", [id])
            guard kind.first?.optional("type", as: String.self) == "group" else {
                throw AIIMError(.invalidState, "only a group conversation has a name")
            }
        }
        try await postgres.query("""
            UPDATE conversations SET name = COALESCE($2, name), ai_reasoning = COALESCE($3, ai_reasoning), updated_at = now()
            WHERE conversation_id = $1
            """, [id, cmd.name, reasoning])
        let dto = try await conversation(id, actor: cmd.actor)
        var shared = dto
        shared.role = nil  // the caller's role; every member gets the event
        try await runtime.publish(DeliveryEvent(
            tenantID: cmd.actor.tenantID, recipients: dto.members?.map(\.userID) ?? [],
            frame: conversationEvent(id, "conversation.updated", ["conversation": try JSONValue(encoding: shared), "by": .string(cmd.actor.userID)])))
        return dto
    }

    func addMembers(_ cmd: AddMembers) async throws -> ConversationDTO {
        let id = try Validation.id(cmd.conversationID, field: "conversation_id")
        guard ["member", "admin", "assistant"].contains(cmd.role) else {
            throw AIIMError.validation("role must be member, admin or assistant")
        }
        guard !cmd.userIDs.isEmpty, cmd.userIDs.count <= Validation.maxMembers else {
            throw AIIMError.validation("user_ids needs 1-\(Validation.maxMembers) users")
        }
        let users = try cmd.userIDs.map { try Validation.id($0, field: "user_ids") }
        let role = try await requireMember(cmd.actor, id)
        guard role == "owner" || role == "admin" else { throw AIIMError.forbidden("only the owner or an admin can add members") }
        let kind = try await postgres.query("SELECT type, last_seq FROM conversations WHERE conversation_id = $1", [id])
        guard kind.first?.optional("type", as: String.self) == "group" else {
            throw AIIMError(.invalidState, "members can be added to group conversations only")
        }
        let bots = try await botUsers(users, tenant: cmd.actor.tenantID)
        let added: [String] = try await postgres.withTransaction { conn in
            var added: [String] = []
            for user in users {
                let r = bots.contains(user) ? "assistant" : cmd.role
                let res = try conn.query("""
                    INSERT INTO conversation_members (conversation_id, user_id, tenant_id, role) VALUES ($1, $2, $3, $4)
                    ON CONFLICT DO NOTHING
                    """, [id, user, cmd.actor.tenantID, r])
                if res.affectedRows == 1 { added.append(user) }
            }
            return added
        }
        if !added.isEmpty {
            let before: Int64 = kind.first?.optional("last_seq") ?? 0
            // Tell gateways first so the new members' devices receive the system message.
            let all = try await memberIDs(id)
            try await runtime.publish(DeliveryEvent(
                tenantID: cmd.actor.tenantID, recipients: all,
                frame: conversationEvent(id, "conversation.member_added", ["user_ids": .array(added.map { .string($0) }),
                                                                         "by": .string(cmd.actor.userID)]),
                membership: MembershipChange(conversationID: id, joined: added, left: [], seqBefore: before)))
            _ = try await insert(
                conversationID: id, tenantID: cmd.actor.tenantID, senderID: cmd.actor.userID, kind: "system",
                content: .object(["event": .string("member_added"), "user_ids": .array(added.map { .string($0) })]),
                replyTo: nil, clientMsgID: "member_added:" + UUIDs.make())
        }
        return try await conversation(id, actor: cmd.actor)
    }

    /// Owners and admins remove others; anyone may leave. The owner cannot be removed.
    func removeMember(_ cmd: RemoveMember) async throws -> Empty {
        let id = try Validation.id(cmd.conversationID, field: "conversation_id")
        let user = try Validation.id(cmd.userID, field: "user_id")
        let role = try await requireMember(cmd.actor, id)
        if user != cmd.actor.userID, role != "owner", role != "admin" {
            throw AIIMError.forbidden("only the owner or an admin can remove members")
        }
        let target = try await postgres.query(
            "SELECT role FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", [id, user])
        guard let targetRole: String = target.first?.optional("role") else { throw AIIMError.notFound("not a member") }
        guard targetRole != "owner" else { throw AIIMError(.invalidState, "the owner cannot be removed") }
        let before = try await memberIDs(id)
        _ = try await insert(
            conversationID: id, tenantID: cmd.actor.tenantID, senderID: cmd.actor.userID, kind: "system",
            content: .object(["event": .string("member_removed"), "user_id": .string(user)]),
            replyTo: nil, clientMsgID: "member_removed:" + UUIDs.make())
        try await postgres.query("DELETE FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", [id, user])
        try await runtime.publish(DeliveryEvent(
            tenantID: cmd.actor.tenantID, recipients: before,
            frame: conversationEvent(id, "conversation.member_removed", ["user_id": .string(user), "by": .string(cmd.actor.userID)]),
            membership: MembershipChange(conversationID: id, joined: [], left: [user], seqBefore: 0)))
        return Empty()
    }

    func memberIDs(_ conversationID: String) async throws -> [String] {
        let rows = try await postgres.query(
            "SELECT user_id FROM conversation_members WHERE conversation_id = $1", [conversationID])
        return rows.rows.compactMap { $0.optional("user_id") }
    }
}
