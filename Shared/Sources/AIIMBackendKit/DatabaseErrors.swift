import AIIMPostgres
import AIIMProtocol
import Logging

extension PostgresError {
    /// The answer a client gets for a permanent database error, at once and never retried:
    /// a data error (class 22: NUL in text, a malformed date, a number out of range, a value too
    /// long) or a constraint violation (23) is the input's fault, `validation_failed` (a unique
    /// violation is `conflict`); anything else permanent (42: syntax, undefined column,
    /// permission) is a defect of the server, `internal`. Nil for a transient error, which the
    /// consumer retries. The message names the kind of problem only: no SQL, no server text.
    public var clientError: AIIMError? {
        guard !isTransient else { return nil }
        switch (sqlStateClass, sqlState) {
        case (_, "22P05"?), (_, "22021"?): return .validation("text must not contain the NUL character (U+0000)")
        case (_, "22001"?): return .validation("a value is too long")
        case (_, "22003"?): return .validation("a number is out of range")
        case (_, "22007"?), (_, "22008"?): return .validation("a date or time is not valid")
        case ("22"?, _): return .validation("a value is not valid")
        case (_, "23505"?), (_, "23P01"?): return .conflict("it exists already")
        case (_, "23503"?): return .validation("a value refers to something that does not exist")
        case ("23"?, _): return .validation("a value breaks a rule of the data")
        default: return .internalError
        }
    }
}

/// Turns a permanent PostgreSQL error a handler let through into its final answer
/// (`PostgresError.clientError`), logged with its SQLSTATE; transient ones pass unchanged.
func classifyDatabaseError(_ error: any Error, command: String, logger: Logger) -> any Error {
    guard let pe = error as? PostgresError, let answer = pe.clientError else { return error }
    let metadata: Logger.Metadata = ["command": "\(command)", "sqlstate": "\(pe.sqlState ?? "none")", "error": "\(pe)"]
    if answer.code == .internalError {
        logger.error("permanent database error; answered as internal", metadata: metadata)
    } else {
        logger.notice("database refused the input; answered at once", metadata: metadata)
    }
    return answer
}
