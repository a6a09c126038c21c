/* The one error enum of asrd (docs/internals/architecture.md, "Errors").
 *
 * Functions returning int answer 0 (ASR_OK) or a negative enum asr_err.
 * ASR_EAGAIN is not an error: "need more bytes" or "queue full, try later".
 * asr_err_code() maps an error to its docs/API.md code string and
 * asr_err_http_status() to the HTTP status a REST answer uses: the only two
 * places where that mapping lives. */
#ifndef ASRD_ERR_H
#define ASRD_ERR_H

/*  name                      value  PROTOCOL code        HTTP  message */
#define ASR_ERR_TABLE(X)                                                              \
    X(ASR_OK,                    0, "OK",                200, "ok")                   \
    X(ASR_EAGAIN,               -1, "AGAIN",             503, "try again")            \
    X(ASR_ENOMEM,               -2, "INTERNAL",          500, "out of memory")        \
    X(ASR_EINVAL,               -3, "INTERNAL",          500, "invalid argument")     \
    X(ASR_EIO,                  -4, "INTERNAL",          500, "i/o error")            \
    X(ASR_ECANCELED,            -5, "INTERNAL",          500, "canceled")             \
    X(ASR_E_INVALID_MESSAGE,   -10, "INVALID_MESSAGE",   400, "invalid message")      \
    X(ASR_E_INVALID_AUDIO,     -11, "INVALID_AUDIO",     400, "invalid audio")        \
    X(ASR_E_CHUNK_TOO_LARGE,   -12, "CHUNK_TOO_LARGE",   413, "chunk too large")      \
    X(ASR_E_OUT_OF_ORDER,      -13, "OUT_OF_ORDER",      400, "sequence out of order") \
    X(ASR_E_RATE_LIMITED,      -14, "RATE_LIMITED",      429, "rate limited")         \
    X(ASR_E_SERVER_BUSY,       -15, "SERVER_BUSY",       503, "server busy")          \
    X(ASR_E_MODEL_ERROR,       -16, "MODEL_ERROR",       500, "engine failed")        \
    X(ASR_E_INTERNAL,          -17, "INTERNAL",          500, "internal error")       \
    X(ASR_E_BAD_REQUEST,       -20, "BAD_REQUEST",       400, "bad request")          \
    X(ASR_E_NOT_AUDIO,         -21, "UNSUPPORTED_MEDIA_TYPE", 415, "not audio of a supported kind") \
    X(ASR_E_TOO_LARGE,         -22, "PAYLOAD_TOO_LARGE", 413, "payload too large")    \
    X(ASR_E_NOT_FOUND,         -23, "NOT_FOUND",         404, "not found")            \
    X(ASR_E_METHOD,            -24, "METHOD_NOT_ALLOWED", 405, "method not allowed")  \
    X(ASR_E_LENGTH_REQUIRED,   -25, "LENGTH_REQUIRED",   411, "length required")      \
    X(ASR_E_HEADERS_TOO_LARGE, -26, "HEADERS_TOO_LARGE", 431, "request headers too large") \
    X(ASR_E_UNAUTHORIZED,      -27, "UNAUTHORIZED",      401, "missing or wrong API key") \
    X(ASR_E_SESSION_NOT_FOUND, -28, "SESSION_NOT_FOUND", 404, "unknown or expired session") \
    X(ASR_E_SESSION_BUSY,      -29, "SESSION_BUSY",      409, "session attached to a live connection") \
    X(ASR_E_SESSION_LIMIT,     -30, "SESSION_LIMIT",     503, "session limit reached") \
    X(ASR_E_DRAINING,          -31, "DRAINING",          503, "server draining")      \
    X(ASR_E_TIMEOUT,           -32, "TIMEOUT",           408, "request timeout")      \
    X(ASR_E_STORE_UNAVAILABLE, -33, "STORE_UNAVAILABLE", 503, "session store unavailable") \
    X(ASR_E_TOO_MANY_CONNECTIONS, -34, "TOO_MANY_CONNECTIONS", 503, "too many connections") \
    X(ASR_E_ENGINE_BUSY,       -35, "ENGINE_BUSY",       503, "engine backlog full") \
    X(ASR_E_ORIGIN_NOT_ALLOWED, -36, "ORIGIN_NOT_ALLOWED", 403, "origin not allowed") \
    X(ASR_E_JOB_NOT_FOUND,     -37, "JOB_NOT_FOUND",     404, "unknown or expired job") \
    X(ASR_E_JOB_NOT_DONE,      -38, "JOB_NOT_COMPLETED", 409, "the job has no result") \
    X(ASR_E_IDEMPOTENCY_CONFLICT, -39, "IDEMPOTENCY_CONFLICT", 422, "idempotency key reused with another request") \
    X(ASR_E_QUEUE_FULL,        -40, "QUEUE_FULL",        503, "job queue full") \
    X(ASR_E_JOBS_UNAVAILABLE,  -41, "JOBS_UNAVAILABLE",  503, "job queue unavailable") \
    X(ASR_E_FETCH_FAILED,      -42, "FETCH_FAILED",      502, "the audio URL could not be fetched") \
    X(ASR_E_URL_NOT_ALLOWED,   -43, "URL_NOT_ALLOWED",   400, "the URL's address is not public")

enum asr_err {
#define ASR_ERR_ENUM_(name, val, code, status, msg) name = val,
    ASR_ERR_TABLE(ASR_ERR_ENUM_)
#undef ASR_ERR_ENUM_
};

/* docs/API.md error code for err ("CHUNK_TOO_LARGE"); "INTERNAL" for unknown values. */
const char *asr_err_code(int err);
/* A short human message for err. Static storage. */
const char *asr_strerror(int err);
/* The HTTP status a REST answer carrying err uses (500 for unknown values). */
int asr_err_http_status(int err);

#endif
