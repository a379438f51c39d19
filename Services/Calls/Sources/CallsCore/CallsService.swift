import AIIMBackendKit
import AIIMConfiguration
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import AIIMRedis
import AIIMServiceKit
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// The calls service: consumes `aiim:cmd:calls`, owns the call state machine in PostgreSQL,
/// relays WebRTC signalling to the addressed participant only, and mints TURN credentials.
/// Membership is read through messaging's `messaging_members` view.
public struct CallsService: BackendService {
    public static let name = ServiceName.calls
    public static func migrations() throws -> [Migration] { try Migrator.bundled(in: .module) }

    public let runtime: BackendRuntime
    public let config: CallsConfiguration
    let store: CallStore
    let ice: ICEConfigurationBuilder

    public init(runtime: BackendRuntime, config: CallsConfiguration) {
        self.runtime = runtime
        self.config = config
        ice = ICEConfigurationBuilder(turn: config.turn)
        store = CallStore(postgres: runtime.postgres, config: config, ice: ice)
    }

    /// Reads the calls settings (`CallsConfiguration`) from `env`; refuses a TURN server without
    /// a secret.
    public init(runtime: BackendRuntime, env: Environment) throws {
        let config = try CallsConfiguration(env: env)
        runtime.logger.notice("calls configured", metadata: [
            "call.turn": "\(config.turn)", "call.ring_timeout_s": "\(config.ringTimeout)",
            "call.disconnect_grace_s": "\(config.disconnectGrace)",
        ])
        self.init(runtime: runtime, config: config)
    }

    /// The timer waits for migrations.
    public var extraServices: [any Service] { [CallTimers(calls: self)] }

    public func routes(_ router: inout CommandRouter) throws {
        try router.register(InitiateCall.self, initiate)
        try router.register(MarkCallRinging.self) { cmd in try await act(.ringing, cmd.callID, cmd.actor).dto }
        try router.register(AcceptCall.self) { cmd in
            let call = try await act(.accept(connection: cmd.actor.connectionID), cmd.callID, cmd.actor)
            return CallSession(call: call.dto, iceConfiguration: ice.configuration(for: cmd.actor.userID))
        }
        try router.register(RejectCall.self) { cmd in try await act(.reject, cmd.callID, cmd.actor).dto }
        try router.register(HangupCall.self) { cmd in try await act(.hangup, cmd.callID, cmd.actor).dto }
        try router.register(GetCall.self) { cmd in
            try await store.call(try Validation.id(cmd.callID, field: "call_id"), for: cmd.actor).dto
        }
        try router.register(ListCallHistory.self) { cmd in
            _ = try Validation.id(cmd.conversationID, field: "conversation_id")
            guard (1...Validation.maxHistoryLimit).contains(cmd.limit), cmd.offset >= 0 else {
                throw AIIMError.validation("limit must be 1-\(Validation.maxHistoryLimit) and offset >= 0")
            }
            return try await store.history(cmd)
        }
        try router.register(GetICEConfiguration.self) { cmd in ice.configuration(for: cmd.actor.userID) }
        try router.register(RelayCallSignal.self) { cmd in
            try await relay(cmd)
            return Empty()
        }
        try router.register(UserDisconnected.self) { cmd in
            await publish(try await store.presence(cmd.actor, at: cmd.occurredAt, disconnected: true))
            return Empty()
        }
        try router.register(UserReconnected.self) { cmd in
            await publish(try await store.presence(cmd.actor, at: cmd.occurredAt, disconnected: false))
            return Empty()
        }
    }

    func initiate(_ cmd: InitiateCall) async throws -> CallSession {
        _ = try Validation.id(cmd.conversationID, field: "conversation_id")
        _ = try Validation.optionalID(cmd.calleeID, field: "to_user_id")
        switch try await store.initiate(cmd) {
        case .initiated(let call, let outbox):
            record(call, action: "initiate")
            await publish(outbox)
            return CallSession(call: call.dto, iceConfiguration: ice.configuration(for: cmd.actor.userID))
        case .busy(let call, let outbox):
            record(call, action: "initiate")
            await publish(outbox)
            throw AIIMError(.busy, "the callee is in another call")
        }
    }

    /// Applies a participant's action; events are published before the reply goes back.
    func act(_ action: CallAction, _ callID: String, _ actor: Actor) async throws -> CallRecord {
        let (call, outbox) = try await store.act(action, callID: try Validation.id(callID, field: "call_id"), actor: actor)
        if !outbox.isEmpty { record(call, action: action.name) }
        await publish(outbox)
        return call
    }

    /// Checks sender, addressee, call state and payload, then publishes the signal to the
    /// addressee's devices only (never to the conversation, never back to the sender).
    func relay(_ cmd: RelayCallSignal) async throws {
        let payload = try CallSignal.validate(cmd.payload)
        let call = try await store.call(try Validation.id(cmd.callID, field: "call_id"), for: cmd.actor)
        guard call.isParticipant(cmd.actor.userID) else { throw AIIMError.forbidden("you are not a participant of this call") }
        let to = try Validation.optionalID(cmd.toUserID, field: "to_user_id") ?? call.peer(of: cmd.actor.userID)
        guard to != cmd.actor.userID else { throw AIIMError.validation("to_user_id must be the other participant") }
        guard call.isParticipant(to) else { throw AIIMError.forbidden("to_user_id is not a participant of this call") }
        guard call.status.isActive else {
            throw AIIMError(.invalidState, "cannot signal a call that is \(call.status.rawValue)")
        }
        try await runtime.publish(CallEvents.signal(call, from: cmd.actor.userID, to: to, payload: payload))
        Counter(label: "aiim_call_signals_total", dimensions: [("type", payload["type"]?.stringValue ?? "?")]).increment()
    }

    /// Publishes outbox items in order and deletes them. On failure the rest stays in the
    /// outbox; the relay publishes it once its claim expires (at-least-once).
    func publish(_ outbox: Outbox) async {
        var done: [Int64] = []
        for (id, item) in outbox {
            do {
                if let event = item.deliver { try await runtime.publish(event) }
                if let message = item.system { try await runtime.bus.send(message) }
                done.append(id)
            } catch {
                runtime.logger.warning("cannot publish call event yet; the outbox relay retries",
                                       metadata: ["call.outbox_id": "\(id)", "error": "\(error)"])
                break
            }
        }
        guard !done.isEmpty else { return }
        do { try await store.deleteOutbox(done) } catch {
            runtime.logger.warning("cannot delete published call events", metadata: ["error": "\(error)"])
        }
    }

    /// One timer pass: expire due calls, then publish what earlier writers could not.
    func tick() async {
        do {
            for (call, outbox) in try await store.expireDue() {
                record(call, action: "timer")
                await publish(outbox)
            }
            let stale = try await store.claimStaleOutbox()
            if !stale.isEmpty {
                runtime.logger.notice("publishing call events from the outbox", metadata: ["call.count": "\(stale.count)"])
                await publish(stale)
            }
        } catch {
            runtime.logger.warning("call timer pass failed", metadata: ["error": "\(error)"])
        }
    }

    /// A participant of an answered call whose presence hash is gone (their gateway died
    /// without telling anyone: SIGKILL, power loss) counts as disconnected from now, exactly as
    /// if the gateway had sent `UserDisconnected`: the grace starts, and the call fails unless
    /// they come back. A later connection's `UserReconnected` stops the grace as usual.
    func checkPresence() async {
        do {
            let participants = try await store.connectedParticipants()
            guard !participants.isEmpty else { return }
            let replies = try await runtime.redis.pipeline(participants.map {
                ["EXISTS", PresenceKeys.user(tenant: $0.tenantID, user: $0.userID)]
            })
            let now = Date()
            for (actor, reply) in zip(participants, replies) where reply.int == 0 {
                runtime.logger.notice("call participant has no connection left; disconnect grace starts",
                                      metadata: ["call.user": "\(actor.userID)"])
                await publish(try await store.presence(actor, at: now, disconnected: true))
            }
        } catch {
            runtime.logger.warning("call presence check failed", metadata: ["error": "\(error)"])
        }
    }

    func record(_ call: CallRecord, action: String) {
        runtime.logger.info("call transition", metadata: [
            "call.id": "\(call.callID)", "call.status": "\(call.status.rawValue)", "call.action": "\(action)",
            "call.version": "\(call.version)",
        ])
        Counter(label: "aiim_calls_total", dimensions: [("status", call.status.rawValue)]).increment()
    }

}

/// Ring timeouts, disconnect grace periods, maximum durations, the presence check of answered
/// calls and the outbox relay. State lives in PostgreSQL,
/// so every replica runs this loop and `FOR UPDATE SKIP LOCKED` shares the work: a replica
/// that dies loses nothing.
struct CallTimers: Service {
    let calls: CallsService

    func run() async throws {
        let clock = ContinuousClock()
        var nextPresenceCheck = clock.now
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if calls.runtime.readiness.isUp("migrations") {
                await calls.tick()
                if clock.now >= nextPresenceCheck {
                    await calls.checkPresence()
                    nextPresenceCheck = clock.now.advanced(by: calls.config.presenceCheckInterval)
                }
            }
            let interval = calls.config.timerInterval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

/// Builds the calls service from the environment (tests call this too). Refuses to build with
/// a TURN server but no secret.
public func buildCalls(env: Environment = Environment(), registry: PrometheusCollectorRegistry) throws -> CallsService {
    try CallsService.build(env: env, registry: registry)
}
