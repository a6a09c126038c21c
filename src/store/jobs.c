/* The job queue in Redis (jobs.h; docs/internals/jobs.md has the keys and
 * the life of a run). Every op is one Lua script on the main connection
 * but jobs_wait, a blocking XREADGROUP on a second one. Key names are built
 * in the scripts' prelude, nowhere else. */
#include "store/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "store/rconn.h"

/* ---- scripts ---------------------------------------------------------------
 * ARGV[1] = key prefix, ARGV[2] = this worker (the consumer), ARGV[3] = the
 * ttl of jobs and runs (ms), ARGV[4] = lease (ms), ARGV[5] = max attempts,
 * ARGV[6] = cache ttl (ms, 0 = off); the op's own arguments from ARGV[7]. */
#define LUA_PRELUDE                                                                                  \
    "if redis.replicate_commands then redis.replicate_commands() end\n"                              \
    "local p, me = ARGV[1], ARGV[2]\n"                                                               \
    "local TTL, LEASE, MAXA, CTTL = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])\n" \
    "local G = 'asrd'\n"                                                                             \
    "local QS, HS, DS = p .. 'jobs:queue', p .. 'jobs:hooks', p .. 'jobs:dead'\n"                    \
    "local QUEUED, SPOOLED = p .. 'jobs:queued', p .. 'jobs:spool_bytes'\n"                          \
    "local function jkey(id) return p .. 'job:' .. id end\n"                                         \
    "local function rkey(id) return p .. 'run:' .. id end\n"                                         \
    "local function rjobs(id) return p .. 'run:' .. id .. ':jobs' end\n"                             \
    "local function spool(id) return p .. 'run:' .. id .. ':audio' end\n"                            \
    "local function hkey(h) return p .. 'runhash:' .. h end\n"                                      \
    "local function ckey(h) return p .. 'cache:' .. h end\n"                                         \
    "local function now_ms()\n"                                                                      \
    "  local t = redis.call('TIME')\n"                                                               \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                           \
    "end\n"                                                                                          \
    "local function final(st) return st == 'completed' or st == 'error' or st == 'canceled' end\n"   \
    /* a job as shown: its hash, with its run's live fields while it waits */                       \
    "local function view(id)\n"                                                                      \
    "  local j = redis.call('HGETALL', jkey(id))\n"                                                  \
    "  if #j == 0 then return j end\n"                                                               \
    "  local st, run\n"                                                                              \
    "  for i = 1, #j, 2 do\n"                                                                        \
    "    if j[i] == 'state' then st = j[i + 1] elseif j[i] == 'run' then run = j[i + 1] end\n"       \
    "  end\n"                                                                                        \
    "  if run and not final(st) then\n"                                                              \
    "    local r = redis.call('HMGET', rkey(run), 'state', 'started', 'attempts', 'progress')\n"      \
    "    local names = {'r_state', 'r_started', 'r_attempts', 'r_progress'}\n"                        \
    "    for i = 1, 4 do if r[i] then j[#j + 1] = names[i]; j[#j + 1] = r[i] end end\n"              \
    "  end\n"                                                                                        \
    "  j[#j + 1] = 'id'; j[#j + 1] = id\n"                                                           \
    "  return j\n"                                                                                   \
    "end\n"                                                                                          \
    "local function ack(s, eid) redis.call('XACK', s, G, eid); redis.call('XDEL', s, eid) end\n"     \
    "local function drop_spool(run)\n"                                                               \
    "  local b = tonumber(redis.call('HGET', rkey(run), 'bytes') or '0')\n"                          \
    "  if redis.call('DEL', spool(run)) == 1 and b > 0 then redis.call('DECRBY', SPOOLED, b) end\n"  \
    "end\n"                                                                                          \
    /* the run is over: forget it (its jobs are final or moved) */                                  \
    "local function end_run(run)\n"                                                                  \
    "  local h = redis.call('HGET', rkey(run), 'hash')\n"                                            \
    "  if h and h ~= '' and redis.call('GET', hkey(h)) == run then redis.call('DEL', hkey(h)) end\n" \
    "  drop_spool(run)\n"                                                                            \
    "  redis.call('DEL', rkey(run), rjobs(run))\n"                                                   \
    "end\n"                                                                                          \
    /* job id stops waiting for run; a queued run no job waits for is dropped */                   \
    "local function leave_run(run, id)\n"                                                            \
    "  redis.call('SREM', rjobs(run), id)\n"                                                         \
    "  local rk = rkey(run)\n"                                                                       \
    "  if redis.call('SCARD', rjobs(run)) == 0 and redis.call('HGET', rk, 'state') == 'queued' then\n" \
    "    local eid = redis.call('HGET', rk, 'eid')\n"                                                \
    "    if eid then redis.call('XDEL', QS, eid) end\n"                                              \
    "    redis.call('DECR', QUEUED)\n"                                                               \
    "    end_run(run)\n"                                                                             \
    "  end\n"                                                                                        \
    "end\n"                                                                                          \
    "local function hook(jid, jk, event)\n"                                                          \
    "  if (redis.call('HGET', jk, 'callback') or '') ~= '' then\n"                                   \
    "    redis.call('XADD', HS, '*', 'job', jid, 'event', event)\n"                                  \
    "    redis.call('HSET', jk, 'hook_state', 'pending')\n"                                          \
    "  end\n"                                                                                        \
    "end\n"                                                                                          \
    /* every job still waiting for run gets fields; returns how many */                             \
    "local function finish_jobs(run, fields, event)\n"                                               \
    "  local n = 0\n"                                                                                \
    "  for _, jid in ipairs(redis.call('SMEMBERS', rjobs(run))) do\n"                                \
    "    local jk = jkey(jid)\n"                                                                     \
    "    local st = redis.call('HGET', jk, 'state')\n"                                               \
    "    if st and not final(st) then\n"                                                             \
    "      redis.call('HSET', jk, unpack(fields))\n"                                                 \
    "      redis.call('PEXPIRE', jk, TTL)\n"                                                         \
    "      hook(jid, jk, event)\n"                                                                   \
    "      n = n + 1\n"                                                                              \
    "    end\n"                                                                                      \
    "  end\n"                                                                                        \
    "  return n\n"                                                                                   \
    "end\n"                                                                                          \
    /* runs finished per second, for the drain rate */                                              \
    "local function count_done(now)\n"                                                               \
    "  local k = p .. 'jobs:done:' .. math.floor(now / 1000)\n"                                      \
    "  redis.call('INCR', k)\n"                                                                      \
    "  redis.call('EXPIRE', k, 120)\n"                                                               \
    "end\n"                                                                                          \
    /* how long until n more runs have drained, from the last 30 s (ms) */                          \
    "local function retry_after(n, now)\n"                                                           \
    "  local sec, done = math.floor(now / 1000), 0\n"                                                \
    "  for i = 1, 30 do done = done + tonumber(redis.call('GET', p .. 'jobs:done:' .. (sec - i)) or '0') end\n" \
    "  if done == 0 then return 5000 end\n"                                                          \
    "  local ms = math.ceil(n * 30000 / done)\n"                                                     \
    "  if ms < 1000 then ms = 1000 end\n"                                                            \
    "  if ms > 600000 then ms = 600000 end\n"                                                        \
    "  return ms\n"                                                                                  \
    "end\n"                                                                                          \
    /* a delivered entry becomes this worker's run (or is dropped) */                               \
    "local function start_entry(eid, run, dl, token, reclaimed)\n"                                   \
    "  local rk = rkey(run)\n"                                                                       \
    "  local st = redis.call('HGET', rk, 'state')\n"                                                 \
    "  if not st then ack(QS, eid); return {1} end\n"                                                \
    "  if st == 'queued' then redis.call('DECR', QUEUED) end\n"                                      \
    "  if redis.call('SCARD', rjobs(run)) == 0 then ack(QS, eid); end_run(run); return {1} end\n"    \
    "  if dl > MAXA then\n"                                                                          \
    "    local last = redis.call('HGET', rk, 'last_error')\n"                                        \
    "    local code, msg = 'WORKER_LOST', 'its worker stopped'\n"                                    \
    "    if last and last ~= '' then\n"                                                              \
    "      local ok, e = pcall(cjson.decode, last)\n"                                                \
    "      if ok and type(e) == 'table' then code = e.code or code; msg = e.message or msg end\n"   \
    "    end\n"                                                                                      \
    "    local err = cjson.encode({code = code, message = 'gave up after ' .. (dl - 1) .. ' deliveries: ' .. msg})\n" \
    "    local now = now_ms()\n"                                                                     \
    "    local n = finish_jobs(run, {'state', 'error', 'error', err, 'finished', now, 'attempts', dl - 1}, 'job.failed')\n" \
    "    redis.call('XADD', DS, 'MAXLEN', '~', 10000, '*', 'run', run, 'hash', redis.call('HGET', rk, 'hash') or '', 'error', err, 'jobs', n)\n" \
    "    ack(QS, eid); end_run(run); count_done(now)\n"                                              \
    "    return {2, n}\n"                                                                            \
    "  end\n"                                                                                        \
    "  local now = now_ms()\n"                                                                       \
    "  redis.call('HSETNX', rk, 'started', now)\n"                                                   \
    "  redis.call('HSET', rk, 'state', 'processing', 'lease', token, 'worker', me, 'attempts', dl, 'progress', '0', 'eid', eid)\n" \
    "  redis.call('PEXPIRE', rk, TTL); redis.call('PEXPIRE', rjobs(run), TTL); redis.call('PEXPIRE', spool(run), TTL)\n" \
    "  local r = redis.call('HMGET', rk, 'hash', 'url', 'ctype', 'opts', 'created', 'started')\n"    \
    "  return {0, run, r[1] or '', r[2] or '', r[3] or '', r[4] or '', redis.call('GET', spool(run)) or '', r[5] or '0', r[6] or '0', dl, reclaimed}\n" \
    "end\n"                                                                                          \
    "local function deliveries(s, eid)\n"                                                            \
    "  local pe = redis.call('XPENDING', s, G, eid, eid, 1)\n"                                       \
    "  if pe[1] then return tonumber(pe[1][4]) end\n"                                                \
    "  return 1\n"                                                                                   \
    "end\n"                                                                                          \
    "local function field(f, name)\n"                                                                \
    "  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end\n"                          \
    "  return ''\n"                                                                                  \
    "end\n"                                                                                          \
    "local function lease_ok(run, token) return redis.call('HGET', rkey(run), 'lease') == token end\n"

enum {
    S_INIT, S_SUBMIT, S_GET, S_CANCEL, S_WITHDRAW, S_BATCH_CREATE, S_BATCH_GET, S_RATE, S_TAKE, S_START, S_RENEW, S_COMPLETE,
    S_FAIL, S_RELEASE, S_ABANDON, S_RESOLVE, S_HOOKS_TAKE, S_HOOK_ATTEMPT, S_HOOK_DONE, S_STATS, S__N
};

/* Submit's answers (and the cancel's). */
enum { R_QUEUED = 0, R_JOINED = 1, R_CACHED = 2, R_REPLAY = 3, R_CONFLICT = 4, R_FULL = 5, R_SPOOL_FULL = 6 };
/* Status codes of the worker's scripts. */
enum { WR_OK = 0, WR_STALE = 4, WR_NOT_FOUND = 3 };

static const char *const script_body[S__N] = {
    /* init (each connect): the consumer groups */
    [S_INIT] =
    "redis.pcall('XGROUP', 'CREATE', QS, G, '0', 'MKSTREAM')\n"
    "redis.pcall('XGROUP', 'CREATE', HS, G, '0', 'MKSTREAM')\n"
    "return 0\n",
    /* submit: [7] job id, [8] run id, [9] owner, [10] hash, [11] bytes of audio in
     * run:<run id>:audio (sent just before, as a plain SET: a large string through Lua's
     * ARGV costs Redis far more than SET does), [12] ctype, [13] url, [14] opts,
     * [15] run opts, [16] callback, [17] batch, [18] idem, [19] fingerprint,
     * [20] request id, [21] max queued, [22] spool max. Every answer but a new run
     * deletes that spool key again. */
    [S_SUBMIT] =
    "local id, run, owner, hash = ARGV[7], ARGV[8], ARGV[9], ARGV[10]\n"
    "local bytes, ctype, url = tonumber(ARGV[11]), ARGV[12], ARGV[13]\n"
    "local idem, fp = ARGV[18], ARGV[19]\n"
    "local maxq, smax = tonumber(ARGV[21]), tonumber(ARGV[22])\n"
    "local ik = p .. 'idem:' .. owner .. ':' .. idem\n"
    "local function unspool() if bytes > 0 then redis.call('DEL', spool(run)) end end\n"
    "if bytes > 0 and redis.call('EXISTS', spool(run)) == 0 then return {7} end\n"
    "if idem ~= '' then\n"
    "  local v = redis.call('GET', ik)\n"
    "  if v then\n"
    "    local sp = string.find(v, ' ', 1, true)\n"
    "    local jid, f = string.sub(v, 1, sp - 1), string.sub(v, sp + 1)\n"
    "    if f ~= fp then unspool(); return {4} end\n"
    "    local vw = view(jid)\n"
    "    if #vw > 0 then unspool(); return {3, vw} end\n"
    "  end\n"
    "end\n"
    "local now = now_ms()\n"
    "local jk = jkey(id)\n"
    "local function save()\n"
    "  redis.call('HSET', jk, 'state', 'queued', 'owner', owner, 'created', now, 'hash', hash, 'opts', ARGV[14],\n"
    "             'callback', ARGV[16], 'batch', ARGV[17], 'request_id', ARGV[20])\n"
    "  redis.call('PEXPIRE', jk, TTL)\n"
    "  if idem ~= '' then redis.call('SET', ik, id .. ' ' .. fp, 'PX', TTL) end\n"
    "end\n"
    "if hash ~= '' and CTTL > 0 then\n"
    "  local c = redis.call('HMGET', ckey(hash), 'result', 'duration_ms')\n"
    "  if c[1] then\n"
    "    save()\n"
    "    redis.call('HSET', jk, 'state', 'completed', 'result', c[1], 'duration_ms', c[2] or '0', 'cached', '1',\n"
    "               'started', now, 'finished', now, 'attempts', '0')\n"
    "    hook(id, jk, 'job.completed')\n"
    "    unspool()\n"
    "    return {2, view(id)}\n"
    "  end\n"
    "end\n"
    "if hash ~= '' then\n"
    "  local other = redis.call('GET', hkey(hash))\n"
    "  if other and redis.call('EXISTS', rkey(other)) == 1 then\n"
    "    save()\n"
    "    redis.call('HSET', jk, 'run', other, 'deduped', '1')\n"
    "    redis.call('SADD', rjobs(other), id)\n"
    "    unspool()\n"
    "    return {1, view(id)}\n"
    "  end\n"
    "end\n"
    "local queued = tonumber(redis.call('GET', QUEUED) or '0')\n"
    "if maxq > 0 and queued >= maxq then unspool(); return {5, retry_after(queued - maxq + 1, now)} end\n"
    "if smax > 0 and bytes > 0 and tonumber(redis.call('GET', SPOOLED) or '0') + bytes > smax then\n"
    "  unspool()\n"
    "  return {6, retry_after(1, now)}\n"
    "end\n"
    "local rk = rkey(run)\n"
    "redis.call('HSET', rk, 'state', 'queued', 'created', now, 'hash', hash, 'opts', ARGV[15], 'ctype', ctype,\n"
    "           'url', url, 'bytes', bytes, 'attempts', '0')\n"
    "redis.call('PEXPIRE', rk, TTL)\n"
    "if bytes > 0 then\n"
    "  redis.call('PEXPIRE', spool(run), TTL)\n"
    "  redis.call('INCRBY', SPOOLED, bytes)\n"
    "end\n"
    "if hash ~= '' then redis.call('SET', hkey(hash), run, 'PX', TTL) end\n"
    "redis.call('SADD', rjobs(run), id)\n"
    "redis.call('PEXPIRE', rjobs(run), TTL)\n"
    "redis.call('HSET', rk, 'eid', redis.call('XADD', QS, '*', 'run', run))\n"
    "redis.call('INCR', QUEUED)\n"
    "save()\n"
    "redis.call('HSET', jk, 'run', run)\n"
    "return {0, view(id)}\n",
    /* get: [7] id, [8] owner */
    [S_GET] =
    "local v = view(ARGV[7])\n"
    "if #v == 0 or redis.call('HGET', jkey(ARGV[7]), 'owner') ~= ARGV[8] then return {} end\n"
    "return v\n",
    /* cancel: [7] id, [8] owner -> {0 canceled | 1 purged | 3 not found, view} */
    [S_CANCEL] =
    "local id = ARGV[7]\n"
    "local jk = jkey(id)\n"
    "local j = redis.call('HMGET', jk, 'owner', 'state', 'run')\n"
    "if not j[1] or j[1] ~= ARGV[8] then return {3} end\n"
    "if final(j[2]) then\n"
    "  local v = view(id)\n"
    "  redis.call('DEL', jk)\n"
    "  return {1, v}\n"
    "end\n"
    "local run = j[3]\n"
    "local now = now_ms()\n"
    "redis.call('HSET', jk, 'state', 'canceled', 'finished', now)\n"
    "redis.call('PEXPIRE', jk, TTL)\n"
    "if run then leave_run(run, id) end\n"
    "return {0, view(id)}\n",
    /* withdraw: [7] job id, [8] owner, [9] the submission's run id, [10] "1" to
     * keep the job (it has an idempotency key: the client's retry finds it).
     * A submission whose answer was lost (no reply in time, the connection
     * dropped): its client was told 503, so what the submit may have left
     * goes: the job, its place in its run (a queued run nobody else waits for
     * with it), and a spool the script never took over. -> 1 job withdrawn */
    [S_WITHDRAW] =
    "local id, run = ARGV[7], ARGV[9]\n"
    "if redis.call('EXISTS', rkey(run)) == 0 then redis.call('DEL', spool(run)) end\n"
    "if ARGV[10] == '1' then return 0 end\n"
    "local jk = jkey(id)\n"
    "local j = redis.call('HMGET', jk, 'owner', 'state', 'run')\n"
    "if not j[1] or j[1] ~= ARGV[8] then return 0 end\n"
    "if j[3] and not final(j[2]) then leave_run(j[3], id) end\n"
    "redis.call('DEL', jk)\n"
    "return 1\n",
    /* batch create: [7] id, [8] owner, [9..] job ids */
    [S_BATCH_CREATE] =
    "local bk = p .. 'batch:' .. ARGV[7]\n"
    "redis.call('DEL', bk, bk .. ':jobs')\n"
    "redis.call('HSET', bk, 'owner', ARGV[8], 'created', now_ms(), 'n', #ARGV - 8)\n"
    "for i = 9, #ARGV do redis.call('RPUSH', bk .. ':jobs', ARGV[i]) end\n"
    "redis.call('PEXPIRE', bk, TTL)\n"
    "if #ARGV > 8 then redis.call('PEXPIRE', bk .. ':jobs', TTL) end\n"
    "return 0\n",
    /* batch get: [7] id, [8] owner -> {created, id1, state1, ...} or {} */
    [S_BATCH_GET] =
    "local bk = p .. 'batch:' .. ARGV[7]\n"
    "local b = redis.call('HMGET', bk, 'owner', 'created')\n"
    "if not b[1] or b[1] ~= ARGV[8] then return {} end\n"
    "local out = {b[2]}\n"
    "for _, jid in ipairs(redis.call('LRANGE', bk .. ':jobs', 0, -1)) do\n"
    "  local j = redis.call('HMGET', jkey(jid), 'state', 'run')\n"
    "  local st = j[1] or 'expired'\n"
    "  if j[2] and not final(st) then st = redis.call('HGET', rkey(j[2]), 'state') or st end\n"
    "  out[#out + 1] = jid; out[#out + 1] = st\n"
    "end\n"
    "return out\n",
    /* rate: [7..] triples key, per second, burst -> {1} or {0, retry ms} */
    [S_RATE] =
    "local now = now_ms()\n"
    "local b = {}\n"
    "for i = 7, #ARGV, 3 do\n"
    "  local k, rate, burst = p .. 'rate:' .. ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])\n"
    "  local s = redis.call('HMGET', k, 'tokens', 'ts')\n"
    "  local tokens = tonumber(s[1] or burst)\n"
    "  local ts = tonumber(s[2] or now)\n"
    "  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)\n"
    "  if tokens < 1 then return {0, math.ceil((1 - tokens) * 1000 / rate)} end\n"
    "  b[#b + 1] = {k, tokens, rate, burst}\n"
    "end\n"
    "for _, x in ipairs(b) do\n"
    "  redis.call('HSET', x[1], 'tokens', tostring(x[2] - 1), 'ts', now)\n"
    "  redis.call('PEXPIRE', x[1], math.ceil(x[4] * 1000 / x[3]) + 1000)\n"
    "end\n"
    "return {1}\n",
    /* take: [7] token -> a run whose lease ran out, else a new one */
    [S_TAKE] =
    "local r = redis.call('XAUTOCLAIM', QS, G, me, LEASE, '0-0', 'COUNT', 1)\n"
    "for _, e in ipairs(r[2]) do\n"
    "  if type(e) == 'table' and e[1] then\n"
    "    return start_entry(e[1], field(e[2], 'run'), deliveries(QS, e[1]), ARGV[7], 1)\n"
    "  end\n"
    "end\n"
    "local n = redis.call('XREADGROUP', 'GROUP', G, me, 'COUNT', 1, 'STREAMS', QS, '>')\n"
    "if n and n[1] and n[1][2][1] then\n"
    "  local e = n[1][2][1]\n"
    "  return start_entry(e[1], field(e[2], 'run'), 1, ARGV[7], 0)\n"
    "end\n"
    "return {3}\n",
    /* start: [7] entry id, [8] run, [9] token (an entry jobs_wait read) */
    [S_START] =
    "return start_entry(ARGV[7], ARGV[8], deliveries(QS, ARGV[7]), ARGV[9], 0)\n",
    /* renew: [7] run, [8] token, [9] progress -> {0, abandoned} or {4} */
    [S_RENEW] =
    "local run = ARGV[7]\n"
    "if not lease_ok(run, ARGV[8]) then return {4} end\n"
    "local rk = rkey(run)\n"
    "redis.call('XCLAIM', QS, G, me, 0, redis.call('HGET', rk, 'eid'), 'JUSTID')\n"
    "redis.call('HSET', rk, 'progress', ARGV[9])\n"
    "redis.call('PEXPIRE', rk, TTL); redis.call('PEXPIRE', rjobs(run), TTL); redis.call('PEXPIRE', spool(run), TTL)\n"
    "if redis.call('SCARD', rjobs(run)) == 0 then return {0, 1} end\n"
    "return {0, 0}\n",
    /* complete: [7] run, [8] token, [9] result, [10] duration ms -> {0, jobs, wait ms} or {4} */
    [S_COMPLETE] =
    "local run = ARGV[7]\n"
    "if not lease_ok(run, ARGV[8]) then return {4} end\n"
    "local rk = rkey(run)\n"
    "local r = redis.call('HMGET', rk, 'eid', 'hash', 'started', 'attempts', 'created')\n"
    "local now = now_ms()\n"
    "local n = finish_jobs(run, {'state', 'completed', 'result', ARGV[9], 'duration_ms', ARGV[10], 'finished', now,\n"
    "                            'started', r[3] or now, 'attempts', r[4] or '1'}, 'job.completed')\n"
    "if r[2] and r[2] ~= '' and CTTL > 0 then\n"
    "  redis.call('HSET', ckey(r[2]), 'result', ARGV[9], 'duration_ms', ARGV[10])\n"
    "  redis.call('PEXPIRE', ckey(r[2]), CTTL)\n"
    "end\n"
    "ack(QS, r[1]); end_run(run); count_done(now)\n"
    "return {0, n, tonumber(r[3] or now) - tonumber(r[5] or now)}\n",
    /* fail: [7] run, [8] token, [9] error -> {0, jobs, wait ms} or {4} */
    [S_FAIL] =
    "local run = ARGV[7]\n"
    "if not lease_ok(run, ARGV[8]) then return {4} end\n"
    "local rk = rkey(run)\n"
    "local r = redis.call('HMGET', rk, 'eid', 'started', 'attempts', 'created')\n"
    "local now = now_ms()\n"
    "local n = finish_jobs(run, {'state', 'error', 'error', ARGV[9], 'finished', now, 'started', r[2] or now,\n"
    "                            'attempts', r[3] or '1'}, 'job.failed')\n"
    "ack(QS, r[1]); end_run(run); count_done(now)\n"
    "return {0, n, tonumber(r[2] or now) - tonumber(r[4] or now)}\n",
    /* release: [7] run, [8] token, [9] error, [10] charge -> 0 or 4 */
    [S_RELEASE] =
    "local run = ARGV[7]\n"
    "if not lease_ok(run, ARGV[8]) then return 4 end\n"
    "local rk = rkey(run)\n"
    "local eid = redis.call('HGET', rk, 'eid')\n"
    "local dl = deliveries(QS, eid)\n"
    "if ARGV[10] == '0' and dl > 0 then dl = dl - 1 end\n"
    "redis.call('HSET', rk, 'state', 'queued', 'lease', '', 'worker', '')\n"
    "if ARGV[9] ~= '' then redis.call('HSET', rk, 'last_error', ARGV[9]) end\n"
    "redis.call('INCR', QUEUED)\n"
    /* idle as long as a lease: any worker's take reclaims it at once */
    "redis.call('XCLAIM', QS, G, me, 0, eid, 'IDLE', LEASE + 1, 'RETRYCOUNT', dl, 'JUSTID')\n"
    "return 0\n",
    /* abandon: [7] run, [8] token -> 0 or 4 */
    [S_ABANDON] =
    "local run = ARGV[7]\n"
    "if not lease_ok(run, ARGV[8]) then return 4 end\n"
    "local eid = redis.call('HGET', rkey(run), 'eid')\n"
    "if eid then ack(QS, eid) end\n"
    "end_run(run)\n"
    "return 0\n",
    /* resolve: [7] run, [8] token, [9] hash -> {0, 0 own | 1 cached | 2 joined} or {4} */
    [S_RESOLVE] =
    "local run, hash = ARGV[7], ARGV[9]\n"
    "if not lease_ok(run, ARGV[8]) then return {4} end\n"
    "local rk = rkey(run)\n"
    "local eid = redis.call('HGET', rk, 'eid')\n"
    "local members = redis.call('SMEMBERS', rjobs(run))\n"
    "for _, jid in ipairs(members) do redis.call('HSET', jkey(jid), 'hash', hash) end\n"
    "if CTTL > 0 then\n"
    "  local c = redis.call('HMGET', ckey(hash), 'result', 'duration_ms')\n"
    "  if c[1] then\n"
    "    local now = now_ms()\n"
    "    finish_jobs(run, {'state', 'completed', 'result', c[1], 'duration_ms', c[2] or '0', 'cached', '1',\n"
    "                      'started', now, 'finished', now}, 'job.completed')\n"
    "    ack(QS, eid); end_run(run)\n"
    "    return {0, 1}\n"
    "  end\n"
    "end\n"
    "local other = redis.call('GET', hkey(hash))\n"
    "if other and other ~= run and redis.call('EXISTS', rkey(other)) == 1 then\n"
    "  for _, jid in ipairs(members) do\n"
    "    redis.call('SADD', rjobs(other), jid)\n"
    "    redis.call('HSET', jkey(jid), 'run', other, 'deduped', '1')\n"
    "  end\n"
    "  ack(QS, eid); end_run(run)\n"
    "  return {0, 2}\n"
    "end\n"
    "redis.call('SET', hkey(hash), run, 'PX', TTL)\n"
    "redis.call('HSET', rk, 'hash', hash)\n"
    "return {0, 0}\n",
    /* hooks take: [7] max -> {{entry, job, event, deliveries, view}, ...} */
    [S_HOOKS_TAKE] =
    "local max = tonumber(ARGV[7])\n"
    "local out = {}\n"
    "local function add(e, dl)\n"
    "  local jid = field(e[2], 'job')\n"
    "  local v = view(jid)\n"
    "  if #v == 0 then ack(HS, e[1]) end\n"
    "  out[#out + 1] = {e[1], jid, field(e[2], 'event'), dl, v}\n"
    "end\n"
    "local r = redis.call('XAUTOCLAIM', HS, G, me, LEASE, '0-0', 'COUNT', max)\n"
    "for _, e in ipairs(r[2]) do\n"
    "  if type(e) == 'table' and e[1] then add(e, deliveries(HS, e[1])) end\n"
    "end\n"
    "if #out < max then\n"
    "  local n = redis.call('XREADGROUP', 'GROUP', G, me, 'COUNT', max - #out, 'STREAMS', HS, '>')\n"
    "  if n and n[1] then for _, e in ipairs(n[1][2]) do add(e, 1) end end\n"
    "end\n"
    "return out\n",
    /* hook attempt: [7] entry, [8] job, [9] attempts */
    [S_HOOK_ATTEMPT] =
    "redis.call('XCLAIM', HS, G, me, 0, ARGV[7], 'JUSTID')\n"
    "if redis.call('EXISTS', jkey(ARGV[8])) == 1 then redis.call('HSET', jkey(ARGV[8]), 'hook_attempts', ARGV[9]) end\n"
    "return 0\n",
    /* hook done: [7] entry, [8] job, [9] outcome, [10] attempts */
    [S_HOOK_DONE] =
    "ack(HS, ARGV[7])\n"
    "if redis.call('EXISTS', jkey(ARGV[8])) == 1 then\n"
    "  redis.call('HSET', jkey(ARGV[8]), 'hook_state', ARGV[9], 'hook_attempts', ARGV[10])\n"
    "end\n"
    "return 0\n",
    /* stats -> {queued, entries, pending, spool bytes, dead, hooks} */
    [S_STATS] =
    "local pend = redis.pcall('XPENDING', QS, G)\n"
    "local np = 0\n"
    "if type(pend) == 'table' and pend[1] then np = pend[1] end\n"
    "return {tonumber(redis.call('GET', QUEUED) or '0'), redis.call('XLEN', QS), np,\n"
    "        tonumber(redis.call('GET', SPOOLED) or '0'), redis.call('XLEN', DS), redis.call('XLEN', HS)}\n",
};

/* ---- types ------------------------------------------------------------------ */

#define JOBS_KEY_MAX 512
#define WITHDRAW_MAX 4096              /* submissions waiting to be withdrawn */

/* A submission whose answer was lost, withdrawn once Redis answers again
 * (S_WITHDRAW). */
struct withdraw {
    char  job[STORE_ID_MAX + 1], run[STORE_ID_MAX + 1];
    char *owner;                       /* owned */
    int   keep;                        /* it has an idempotency key: only its stray spool goes */
};

struct jobs {
    uv_loop_t     *loop;               /* borrowed */
    struct rconn  *main;               /* owned: every script */
    struct rconn  *wait;               /* owned: jobs_wait's blocking read */
    char          *scripts[S__N];      /* owned: prelude + body */
    char           worker[STORE_WORKER_ID_MAX + 1];
    char           prefix[STORE_PREFIX_MAX + 1];
    char           queue_key[STORE_PREFIX_MAX + 16];
    char           a_ttl[24], a_lease[24], a_maxa[24], a_cttl[24], a_maxq[24], a_smax[24];
    void         (*on_state)(void *ctx, int up);
    void          *ctx;
    int            closing;
    int            open_conns;         /* rconns not yet closed */
    void         (*on_closed)(void *arg);
    void          *closed_arg;
    int            waiting;            /* a jobs_wait is out */
    struct withdraw *wd[WITHDRAW_MAX]; /* owned: withdrawals not yet answered by Redis */
    size_t         n_wd;
};

/* One op: what the reply handler needs. */
struct jop {
    struct jobs *j;
    int          script;               /* which answer to parse */
    union {
        jobs_submit_fn  submit;
        jobs_view_fn    view;
        jobs_cancel_fn  cancel;
        jobs_batch_fn   batch;
        jobs_rate_fn    rate;
        jobs_take_fn    take;
        jobs_renew_fn   renew;
        jobs_done_fn    done;
        jobs_resolve_fn resolve;
        jobs_hooks_fn   hooks;
        jobs_status_fn  status;
        jobs_stats_fn   stats;
    } cb;
    void        *arg;
    char         token[40];            /* jobs_wait: the token to start the entry with */
    struct withdraw *wd;               /* owned: S_SUBMIT, what to withdraw if its answer is lost;
                                        * S_WITHDRAW, the withdrawal */
};

/* ---- replies ------------------------------------------------------------------ */

static int is_str(const redisReply *r) { return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS); }

static uint64_t r_u64(const redisReply *r) {
    uint64_t v = 0;
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer > 0 ? (uint64_t)r->integer : 0;
    if (is_str(r) && util_parse_u64(r->str, r->len, UINT64_MAX, &v) == 0) return v;
    return 0;
}

static long long r_int(const redisReply *r) {
    if (r && r->type == REDIS_REPLY_INTEGER) return r->integer;
    return -1;
}

static const char *r_str(const redisReply *r) { return is_str(r) ? r->str : ""; }

/* An HGETALL-shaped array into a view (strings borrowed from r). 0, or -1
 * when r is not a job. */
static int parse_view(const redisReply *r, struct jobs_view *v) {
    memset(v, 0, sizeof *v);
    v->id = v->state = v->owner = v->hash = v->opts = v->callback = v->batch = v->request_id = v->error = "";
    v->result = v->hook_state = "";
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2) return -1;
    const char *r_state = NULL;
    uint64_t r_started = 0, r_attempts = 0;
    int has_r_started = 0, has_r_attempts = 0;
    double r_progress = -1;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *val = r->element[i + 1];
        if (!is_str(k) || !is_str(val)) continue;
        const char *n = k->str, *s = val->str;
        if (strcmp(n, "id") == 0) v->id = s;
        else if (strcmp(n, "state") == 0) v->state = s;
        else if (strcmp(n, "owner") == 0) v->owner = s;
        else if (strcmp(n, "hash") == 0) v->hash = s;
        else if (strcmp(n, "opts") == 0) v->opts = s;
        else if (strcmp(n, "callback") == 0) v->callback = s;
        else if (strcmp(n, "batch") == 0) v->batch = s;
        else if (strcmp(n, "request_id") == 0) v->request_id = s;
        else if (strcmp(n, "error") == 0) v->error = s;
        else if (strcmp(n, "result") == 0) v->result = s, v->result_len = val->len;
        else if (strcmp(n, "hook_state") == 0) v->hook_state = s;
        else if (strcmp(n, "created") == 0) v->created_ms = r_u64(val);
        else if (strcmp(n, "started") == 0) v->started_ms = r_u64(val);
        else if (strcmp(n, "finished") == 0) v->finished_ms = r_u64(val);
        else if (strcmp(n, "attempts") == 0) v->attempts = r_u64(val);
        else if (strcmp(n, "hook_attempts") == 0) v->hook_attempts = r_u64(val);
        else if (strcmp(n, "duration_ms") == 0) v->duration_ms = r_u64(val);
        else if (strcmp(n, "progress") == 0) v->progress = strtod(s, NULL);
        else if (strcmp(n, "cached") == 0) v->cached = s[0] == '1';
        else if (strcmp(n, "deduped") == 0) v->deduped = s[0] == '1';
        else if (strcmp(n, "r_state") == 0) r_state = s;
        else if (strcmp(n, "r_started") == 0) r_started = r_u64(val), has_r_started = 1;
        else if (strcmp(n, "r_attempts") == 0) r_attempts = r_u64(val), has_r_attempts = 1;
        else if (strcmp(n, "r_progress") == 0) r_progress = strtod(s, NULL);
    }
    if (!v->id[0] || !v->state[0]) return -1;
    /* A waiting job shows its run's life. */
    if (r_state && (strcmp(v->state, "queued") == 0 || strcmp(v->state, "processing") == 0)) {
        v->state = strcmp(r_state, "processing") == 0 ? "processing" : "queued";
        if (has_r_started) v->started_ms = r_started;
        if (has_r_attempts) v->attempts = r_attempts;
        if (r_progress >= 0) v->progress = r_progress;
    }
    if (strcmp(v->state, "completed") == 0) v->progress = 1.0;
    if (v->progress < 0) v->progress = 0;
    if (v->progress > 1) v->progress = 1;
    return 0;
}

/* ---- sending ---------------------------------------------------------------------- */

static void on_reply(void *arg, int status, const redisReply *r);

#define MAX_ARGS 512

/* Sends script s with the common arguments, then args[0..n). */
static int send_script(struct jobs *j, struct jop *o, int s, const char *const *args, const size_t *lens, size_t n) {
    if (j->closing) return ASR_EINVAL;
    if (n + 6 > MAX_ARGS) return ASR_EINVAL;
    const char *argv[MAX_ARGS];
    size_t len[MAX_ARGS];
    const char *common[6] = {j->prefix, j->worker, j->a_ttl, j->a_lease, j->a_maxa, j->a_cttl};
    for (int i = 0; i < 6; i++) {
        argv[i] = common[i];
        len[i] = strlen(common[i]);
    }
    for (size_t i = 0; i < n; i++) {
        argv[6 + i] = args[i] ? args[i] : "";
        len[6 + i] = lens ? lens[i] : strlen(argv[6 + i]);
    }
    o->j = j;
    o->script = s;
    int r = rconn_eval(j->main, (size_t)s, (int)(n + 6), argv, len, on_reply, o);
    if (r != 0) free(o);
    return r;
}

static struct jop *jop_new(void *arg) {
    struct jop *o = xcalloc(1, sizeof *o);
    o->arg = arg;
    return o;
}

/* A take/start answer into a task. */
static void complete_take(struct jop *o, int status, const redisReply *r) {
    struct jobs_task t;
    memset(&t, 0, sizeof t);
    if (status != STORE_OK) {
        o->cb.take(o->arg, status, JOBS_NONE, NULL);
        return;
    }
    long long code = r->type == REDIS_REPLY_ARRAY && r->elements ? r_int(r->element[0]) : -1;
    if (code == 0 && r->elements >= 11) {
        t.run_id = r_str(r->element[1]);
        t.token = o->token;
        t.hash = r_str(r->element[2]);
        t.url = r_str(r->element[3]);
        t.ctype = r_str(r->element[4]);
        t.opts = r_str(r->element[5]);
        t.audio = is_str(r->element[6]) ? r->element[6]->str : "";
        t.audio_len = is_str(r->element[6]) ? r->element[6]->len : 0;
        t.created_ms = r_u64(r->element[7]);
        t.started_ms = r_u64(r->element[8]);
        t.attempt = r_u64(r->element[9]);
        t.reclaimed = r_int(r->element[10]) == 1;
        o->cb.take(o->arg, STORE_OK, JOBS_TASK, &t);
    } else if (code == 1) {
        o->cb.take(o->arg, STORE_OK, JOBS_SKIPPED, NULL);
    } else if (code == 2) {
        o->cb.take(o->arg, STORE_OK, JOBS_DEAD, NULL);
    } else if (code == 3) {
        o->cb.take(o->arg, STORE_OK, JOBS_NONE, NULL);
    } else {
        o->cb.take(o->arg, STORE_UNAVAILABLE, JOBS_NONE, NULL);
    }
}

static void complete_hooks(struct jop *o, const redisReply *r) {
    size_t n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
    struct jobs_hook *h = xcalloc(n ? n : 1, sizeof *h);
    struct jobs_view *v = xcalloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 5) continue;
        h[k].entry = r_str(e->element[0]);
        h[k].job_id = r_str(e->element[1]);
        h[k].event = r_str(e->element[2]);
        h[k].delivery = r_u64(e->element[3]);
        h[k].job = parse_view(e->element[4], &v[k]) == 0 ? &v[k] : NULL;
        k++;
    }
    o->cb.hooks(o->arg, STORE_OK, k, h);
    free(h);
    free(v);
}

static void withdraw_free(struct withdraw *w) {
    if (!w) return;
    free(w->owner);
    free(w);
}

/* Keeps w to be withdrawn (at most WITHDRAW_MAX: past it the submission
 * stays, said in the log). */
static void withdraw_keep(struct jobs *j, struct withdraw *w) {
    if (j->n_wd == WITHDRAW_MAX || j->closing) {
        struct log_line *l = log_begin(LOG_WARN, "lost submission not withdrawn");
        if (l) {
            log_str(l, "job_id", w->job);
            log_end(l);
        }
        withdraw_free(w);
        return;
    }
    j->wd[j->n_wd++] = w;
}

/* Sends every kept withdrawal (while Redis is up; one whose send or reply
 * fails is kept for the next time it is). */
static void withdraw_flush(struct jobs *j) {
    while (j->n_wd && !j->closing && rconn_usable(j->main)) {
        struct withdraw *w = j->wd[--j->n_wd];
        struct jop *o = xcalloc(1, sizeof *o);
        o->wd = w;
        const char *a[4] = {w->job, w->owner, w->run, w->keep ? "1" : "0"};
        if (send_script(j, o, S_WITHDRAW, a, NULL, 4) != 0) {
            j->wd[j->n_wd++] = w;
            break;
        }
    }
}

/* Every script's reply comes here and goes to its op's callback. */
static void on_reply(void *arg, int status, const redisReply *r) {
    struct jop *o = arg;
    struct jobs *j = o->j;
    if (status == 0 && r->type == REDIS_REPLY_ERROR) {
        struct log_line *l = log_begin(LOG_WARN, "job queue error reply");
        if (l) {
            log_str(l, "error", r->str);
            log_end(l);
        }
        /* The stream or its group was deleted (a FLUSHALL): make them again. */
        if (strstr(r->str, "NOGROUP")) {
            struct jop *init = jop_new(NULL);
            init->script = -1;
            if (send_script(j, init, S_INIT, NULL, NULL, 0) != 0) { /* freed there */ }
        }
        status = STORE_UNAVAILABLE;
    }
    int st = status == 0 ? STORE_OK : STORE_UNAVAILABLE;
    long long code = st == STORE_OK && r->type == REDIS_REPLY_ARRAY && r->elements ? r_int(r->element[0])
                     : st == STORE_OK && r->type == REDIS_REPLY_INTEGER ? r->integer
                                                                         : -1;
    switch (o->script) {
    case -1:
    case S_INIT:
        break;
    case S_SUBMIT: {
        struct jobs_view v;
        struct jobs_submit_res res = {0};
        if (st != STORE_OK || code < 0 || code > R_SPOOL_FULL) { /* 7: the spool SET failed (Redis full) */
            /* The client hears 503: whatever the script may still have
             * done goes again (docs/internals/jobs.md "A run's life"). */
            withdraw_keep(j, o->wd);
            o->wd = NULL;
            withdraw_flush(j);
            o->cb.submit(o->arg, STORE_UNAVAILABLE, NULL);
            break;
        }
        res.outcome = code == R_QUEUED ? JOBS_QUEUED : code == R_JOINED ? JOBS_JOINED : code == R_CACHED ? JOBS_CACHED
                      : code == R_REPLAY ? JOBS_REPLAY : code == R_CONFLICT ? JOBS_CONFLICT
                      : code == R_FULL ? JOBS_FULL : JOBS_SPOOL_FULL;
        if (code <= R_REPLAY) {
            if (r->elements < 2 || parse_view(r->element[1], &v) != 0) {
                o->cb.submit(o->arg, STORE_UNAVAILABLE, NULL);
                break;
            }
            res.job = &v;
        } else if (code == R_FULL || code == R_SPOOL_FULL) {
            res.retry_after_ms = r->elements >= 2 ? r_u64(r->element[1]) : 1000;
        }
        o->cb.submit(o->arg, STORE_OK, &res);
        break;
    }
    case S_WITHDRAW:
        if (st != STORE_OK) {
            withdraw_keep(j, o->wd);  /* sent again when Redis is back (on_main_state) */
        } else if (code == 1) {
            struct log_line *l = log_begin(LOG_WARN, "lost submission withdrawn");
            if (l) {
                log_str(l, "job_id", o->wd->job);
                log_end(l);
            }
        }
        if (st == STORE_OK) withdraw_free(o->wd);
        o->wd = NULL;
        break;
    case S_GET: {
        struct jobs_view v;
        if (st != STORE_OK) o->cb.view(o->arg, st, NULL);
        else if (parse_view(r, &v) != 0) o->cb.view(o->arg, STORE_NOT_FOUND, NULL);
        else o->cb.view(o->arg, STORE_OK, &v);
        break;
    }
    case S_CANCEL: {
        struct jobs_view v;
        if (st != STORE_OK || code < 0) o->cb.cancel(o->arg, STORE_UNAVAILABLE, JOBS_CANCELED, NULL);
        else if (code == WR_NOT_FOUND || r->elements < 2 || parse_view(r->element[1], &v) != 0)
            o->cb.cancel(o->arg, STORE_NOT_FOUND, JOBS_CANCELED, NULL);
        else o->cb.cancel(o->arg, STORE_OK, code == 1 ? JOBS_PURGED : JOBS_CANCELED, &v);
        break;
    }
    case S_BATCH_GET: {
        if (st != STORE_OK || r->type != REDIS_REPLY_ARRAY) {
            o->cb.batch(o->arg, STORE_UNAVAILABLE, NULL);
            break;
        }
        if (r->elements == 0) {
            o->cb.batch(o->arg, STORE_NOT_FOUND, NULL);
            break;
        }
        size_t n = (r->elements - 1) / 2;
        const char **ids = xcalloc(n ? n : 1, sizeof *ids), **states = xcalloc(n ? n : 1, sizeof *states);
        for (size_t i = 0; i < n; i++) {
            ids[i] = r_str(r->element[1 + 2 * i]);
            states[i] = r_str(r->element[2 + 2 * i]);
        }
        struct jobs_batch b = {.created_ms = r_u64(r->element[0]), .n = n, .job_ids = ids, .states = states};
        o->cb.batch(o->arg, STORE_OK, &b);
        free(ids);
        free(states);
        break;
    }
    case S_RATE:
        if (st != STORE_OK || code < 0) o->cb.rate(o->arg, STORE_UNAVAILABLE, 1, 0);
        else o->cb.rate(o->arg, STORE_OK, code == 1, code == 1 || r->elements < 2 ? 0 : r_u64(r->element[1]));
        break;
    case S_TAKE:
    case S_START:
        complete_take(o, st == STORE_OK && code >= 0 ? STORE_OK : STORE_UNAVAILABLE, r);
        break;
    case S_RENEW:
        if (st != STORE_OK || code < 0) o->cb.renew(o->arg, STORE_UNAVAILABLE, 0);
        else if (code == WR_STALE) o->cb.renew(o->arg, STORE_NOT_OWNER, 0);
        else o->cb.renew(o->arg, STORE_OK, r->elements >= 2 && r_int(r->element[1]) == 1);
        break;
    case S_COMPLETE:
    case S_FAIL:
        if (st != STORE_OK || code < 0) o->cb.done(o->arg, STORE_UNAVAILABLE, 0, 0);
        else if (code == WR_STALE) o->cb.done(o->arg, STORE_NOT_OWNER, 0, 0);
        else
            o->cb.done(o->arg, STORE_OK, r->elements >= 2 ? r_u64(r->element[1]) : 0,
                       r->elements >= 3 ? r_u64(r->element[2]) : 0);
        break;
    case S_RESOLVE:
        if (st != STORE_OK || code < 0) o->cb.resolve(o->arg, STORE_UNAVAILABLE, JOBS_RESOLVE_OWN);
        else if (code == WR_STALE) o->cb.resolve(o->arg, STORE_NOT_OWNER, JOBS_RESOLVE_OWN);
        else {
            long long k = r->elements >= 2 ? r_int(r->element[1]) : 0;
            o->cb.resolve(o->arg, STORE_OK, k == 1 ? JOBS_RESOLVE_CACHED : k == 2 ? JOBS_RESOLVE_JOINED : JOBS_RESOLVE_OWN);
        }
        break;
    case S_HOOKS_TAKE:
        if (st != STORE_OK || r->type != REDIS_REPLY_ARRAY) o->cb.hooks(o->arg, STORE_UNAVAILABLE, 0, NULL);
        else complete_hooks(o, r);
        break;
    case S_STATS: {
        if (st != STORE_OK || r->type != REDIS_REPLY_ARRAY || r->elements < 6) {
            o->cb.stats(o->arg, STORE_UNAVAILABLE, NULL);
            break;
        }
        struct jobs_stats s = {.queued = r_u64(r->element[0]), .entries = r_u64(r->element[1]),
                               .pending = r_u64(r->element[2]), .spool_bytes = r_u64(r->element[3]),
                               .dead = r_u64(r->element[4]), .hooks = r_u64(r->element[5])};
        o->cb.stats(o->arg, STORE_OK, &s);
        break;
    }
    default: /* RELEASE, ABANDON, BATCH_CREATE, HOOK_ATTEMPT, HOOK_DONE: a status */
        if (o->cb.status)
            o->cb.status(o->arg, st != STORE_OK || code < 0 ? STORE_UNAVAILABLE
                                 : code == WR_STALE          ? STORE_NOT_OWNER
                                                            : STORE_OK);
        break;
    }
    withdraw_free(o->wd);
    free(o);
}

/* ---- open / close ---------------------------------------------------------------------- */

static void on_main_state(void *ctx, int up) {
    struct jobs *j = ctx;
    if (up) {
        struct jop *o = jop_new(NULL);
        (void)send_script(j, o, S_INIT, NULL, NULL, 0);
        withdraw_flush(j);
    }
    if (j->on_state) j->on_state(j->ctx, up);
}

int jobs_open(uv_loop_t *loop, const struct jobs_cfg *cfg, struct jobs **out) {
    struct store_url url;
    if (!loop || !cfg || !out || !cfg->redis_url || store_url_parse(cfg->redis_url, &url) != 0) return ASR_EINVAL;
    if (!store__valid_name(cfg->worker_id, STORE_WORKER_ID_MAX)) return ASR_EINVAL;
    const char *prefix = cfg->key_prefix ? cfg->key_prefix : "asrd:";
    if (strlen(prefix) > STORE_PREFIX_MAX || cfg->ttl_ms == 0 || cfg->lease_ms == 0 || cfg->max_attempts == 0)
        return ASR_EINVAL;
    struct jobs *j = xcalloc(1, sizeof *j);
    j->loop = loop;
    snprintf(j->worker, sizeof j->worker, "%s", cfg->worker_id);
    snprintf(j->prefix, sizeof j->prefix, "%s", prefix);
    snprintf(j->queue_key, sizeof j->queue_key, "%sjobs:queue", prefix);
    snprintf(j->a_ttl, sizeof j->a_ttl, "%llu", (unsigned long long)cfg->ttl_ms);
    snprintf(j->a_lease, sizeof j->a_lease, "%llu", (unsigned long long)cfg->lease_ms);
    snprintf(j->a_maxa, sizeof j->a_maxa, "%u", cfg->max_attempts);
    snprintf(j->a_cttl, sizeof j->a_cttl, "%llu", (unsigned long long)cfg->cache_ttl_ms);
    snprintf(j->a_maxq, sizeof j->a_maxq, "%llu", (unsigned long long)cfg->max_queued);
    snprintf(j->a_smax, sizeof j->a_smax, "%llu", (unsigned long long)cfg->spool_max_bytes);
    j->on_state = cfg->on_state;
    j->ctx = cfg->ctx;
    size_t pl = strlen(LUA_PRELUDE);
    for (int i = 0; i < S__N; i++) {
        size_t bl = strlen(script_body[i]);
        j->scripts[i] = xmalloc(pl + bl + 1);
        memcpy(j->scripts[i], LUA_PRELUDE, pl);
        memcpy(j->scripts[i] + pl, script_body[i], bl + 1);
    }
    struct rconn_cfg rc = {.url = &url, .op_timeout_ms = cfg->op_timeout_ms, .name = "jobs",
                           .scripts = (const char *const *)j->scripts, .n_scripts = S__N,
                           .on_state = on_main_state, .ctx = j};
    int r = rconn_open(loop, &rc, &j->main);
    if (r == 0) {
        struct rconn_cfg wc = {.url = &url, .op_timeout_ms = cfg->op_timeout_ms, .name = "jobs-wait"};
        r = rconn_open(loop, &wc, &j->wait);
        if (r != 0) rconn_close(j->main, NULL, NULL);
    }
    memset(&url, 0, sizeof url);
    if (r != 0) {
        for (int i = 0; i < S__N; i++) free(j->scripts[i]);
        free(j);
        return r;
    }
    j->open_conns = 2;
    *out = j;
    return 0;
}

static void on_conn_closed(void *arg) {
    struct jobs *j = arg;
    if (--j->open_conns) return;
    void (*cb)(void *) = j->on_closed;
    void *a = j->closed_arg;
    while (j->n_wd) withdraw_free(j->wd[--j->n_wd]);
    for (int i = 0; i < S__N; i++) free(j->scripts[i]);
    free(j);
    if (cb) cb(a);
}

void jobs_close(struct jobs *j, void (*on_closed)(void *arg), void *arg) {
    if (!j || j->closing) return;
    j->closing = 1;
    j->on_closed = on_closed;
    j->closed_arg = arg;
    rconn_close(j->wait, on_conn_closed, j);
    rconn_close(j->main, on_conn_closed, j);
}

int jobs_up(const struct jobs *j) { return rconn_usable(j->main); }

/* ---- the API's side ---------------------------------------------------------------------- */

/* The spool first, as a plain SET on the same connection (so it runs just
 * before the script, which takes the key over or deletes it); its reply
 * needs no handling: the script checks that the key is there. */
static int spool_upload(struct jobs *j, const struct jobs_submit *s) {
    char key[JOBS_KEY_MAX];
    snprintf(key, sizeof key, "%srun:%s:audio", j->prefix, s->run_id);
    const char *argv[5] = {"SET", key, (const char *)s->audio, "PX", j->a_ttl};
    size_t len[5] = {3, strlen(key), s->audio_len, 2, strlen(j->a_ttl)};
    return rconn_argv(j->main, 5, argv, len, 0, NULL, NULL);
}

int jobs_submit(struct jobs *j, const struct jobs_submit *s, jobs_submit_fn cb, void *arg) {
    if (j->closing) return ASR_EINVAL;
    char bytes[24];
    size_t n = s->audio ? s->audio_len : 0;
    snprintf(bytes, sizeof bytes, "%zu", n);
    if (n) {
        int r = spool_upload(j, s);
        if (r != 0) return r;
    }
    struct withdraw *w = xcalloc(1, sizeof *w);
    snprintf(w->job, sizeof w->job, "%s", s->job_id);
    snprintf(w->run, sizeof w->run, "%s", s->run_id);
    w->owner = xstrdup(s->owner);
    w->keep = s->idem_key && s->idem_key[0];
    struct jop *o = jop_new(arg);
    o->cb.submit = cb;
    o->wd = w;
    const char *a[16] = {s->job_id, s->run_id, s->owner, s->hash, bytes, s->ctype, s->url, s->opts, s->run_opts,
                         s->callback, s->batch, s->idem_key, s->idem_fp, s->request_id, j->a_maxq, j->a_smax};
    int r = send_script(j, o, S_SUBMIT, a, NULL, 16);
    if (r != 0 && n) withdraw_keep(j, w);  /* the spool's SET may be out: it goes when Redis is back */
    else if (r != 0) withdraw_free(w);
    return r;
}

int jobs_get(struct jobs *j, const char *id, const char *owner, jobs_view_fn cb, void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.view = cb;
    const char *a[2] = {id, owner};
    return send_script(j, o, S_GET, a, NULL, 2);
}

int jobs_cancel(struct jobs *j, const char *id, const char *owner, jobs_cancel_fn cb, void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.cancel = cb;
    const char *a[2] = {id, owner};
    return send_script(j, o, S_CANCEL, a, NULL, 2);
}

int jobs_batch_create(struct jobs *j, const char *batch_id, const char *owner, const char *const *job_ids, size_t n,
                      jobs_status_fn cb, void *arg) {
    if (n + 2 > MAX_ARGS - 6) return ASR_EINVAL;
    const char *a[MAX_ARGS];
    a[0] = batch_id;
    a[1] = owner;
    for (size_t i = 0; i < n; i++) a[2 + i] = job_ids[i];
    struct jop *o = jop_new(arg);
    o->cb.status = cb;
    return send_script(j, o, S_BATCH_CREATE, a, NULL, n + 2);
}

int jobs_batch_get(struct jobs *j, const char *batch_id, const char *owner, jobs_batch_fn cb, void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.batch = cb;
    const char *a[2] = {batch_id, owner};
    return send_script(j, o, S_BATCH_GET, a, NULL, 2);
}

int jobs_rate(struct jobs *j, const struct jobs_bucket *b, size_t n, jobs_rate_fn cb, void *arg) {
    if (n == 0 || n > 8) return ASR_EINVAL;
    char nums[16][32];
    const char *a[24];
    for (size_t i = 0; i < n; i++) {
        snprintf(nums[2 * i], sizeof nums[0], "%.6f", b[i].per_s);
        snprintf(nums[2 * i + 1], sizeof nums[0], "%.6f", b[i].burst);
        a[3 * i] = b[i].key;
        a[3 * i + 1] = nums[2 * i];
        a[3 * i + 2] = nums[2 * i + 1];
    }
    struct jop *o = jop_new(arg);
    o->cb.rate = cb;
    return send_script(j, o, S_RATE, a, NULL, 3 * n);
}

/* ---- the worker's side ----------------------------------------------------------------------- */

int jobs_take(struct jobs *j, const char *token, jobs_take_fn cb, void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.take = cb;
    snprintf(o->token, sizeof o->token, "%s", token);
    const char *a[1] = {token};
    return send_script(j, o, S_TAKE, a, NULL, 1);
}

/* jobs_wait: the blocking read answered; an entry is started on the main
 * connection (the op goes on as a START). */
static void on_wait_reply(void *arg, int status, const redisReply *r) {
    struct jop *o = arg;
    struct jobs *j = o->j;
    j->waiting = 0;
    if (status != 0 || !r || r->type == REDIS_REPLY_ERROR) {
        if (status == 0 && r && r->type == REDIS_REPLY_ERROR && strstr(r->str, "NOGROUP")) {
            struct jop *init = jop_new(NULL);
            (void)send_script(j, init, S_INIT, NULL, NULL, 0);
        }
        o->cb.take(o->arg, STORE_UNAVAILABLE, JOBS_NONE, NULL);
        free(o);
        return;
    }
    /* [[stream, [[id, [field, value...]]]]] or nil */
    const redisReply *e = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1) {
        const redisReply *s = r->element[0];
        if (s->type == REDIS_REPLY_ARRAY && s->elements >= 2 && s->element[1]->type == REDIS_REPLY_ARRAY &&
            s->element[1]->elements >= 1)
            e = s->element[1]->element[0];
    }
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 2 || !is_str(e->element[0])) {
        o->cb.take(o->arg, STORE_OK, JOBS_NONE, NULL);
        free(o);
        return;
    }
    const char *run = "";
    const redisReply *f = e->element[1];
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
        if (strcmp(r_str(f->element[i]), "run") == 0) run = r_str(f->element[i + 1]);
    const char *a[3] = {e->element[0]->str, run, o->token};
    jobs_take_fn cb = o->cb.take;
    void *cb_arg = o->arg;
    o->script = S_START;
    if (send_script(j, o, S_START, a, NULL, 3) != 0) /* o freed: the entry waits for a reclaim */
        cb(cb_arg, STORE_UNAVAILABLE, JOBS_NONE, NULL);
}

int jobs_wait(struct jobs *j, uint64_t block_ms, const char *token, jobs_take_fn cb, void *arg) {
    if (j->closing) return ASR_EINVAL;
    if (j->waiting) return ASR_EAGAIN;
    char block[24], group[8] = "asrd";
    snprintf(block, sizeof block, "%llu", (unsigned long long)block_ms);
    const char *argv[] = {"XREADGROUP", "GROUP", group, j->worker, "COUNT", "1", "BLOCK", block,
                          "STREAMS", j->queue_key, ">"};
    struct jop *o = jop_new(arg);
    o->j = j;
    o->cb.take = cb;
    snprintf(o->token, sizeof o->token, "%s", token);
    int r = rconn_argv(j->wait, (int)(sizeof argv / sizeof *argv), argv, NULL, block_ms, on_wait_reply, o);
    if (r != 0) {
        free(o);
        return r;
    }
    j->waiting = 1;
    return 0;
}

int jobs_renew(struct jobs *j, const char *run_id, const char *token, double progress, jobs_renew_fn cb, void *arg) {
    char pr[32];
    snprintf(pr, sizeof pr, "%.4f", progress < 0 ? 0 : progress > 1 ? 1 : progress);
    struct jop *o = jop_new(arg);
    o->cb.renew = cb;
    const char *a[3] = {run_id, token, pr};
    return send_script(j, o, S_RENEW, a, NULL, 3);
}

int jobs_complete(struct jobs *j, const char *run_id, const char *token, const char *result, size_t len,
                  uint64_t duration_ms, jobs_done_fn cb, void *arg) {
    char dur[24];
    snprintf(dur, sizeof dur, "%llu", (unsigned long long)duration_ms);
    struct jop *o = jop_new(arg);
    o->cb.done = cb;
    const char *a[4] = {run_id, token, result, dur};
    size_t l[4] = {strlen(run_id), strlen(token), len, strlen(dur)};
    return send_script(j, o, S_COMPLETE, a, l, 4);
}

int jobs_fail(struct jobs *j, const char *run_id, const char *token, const char *error, jobs_done_fn cb, void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.done = cb;
    const char *a[3] = {run_id, token, error};
    return send_script(j, o, S_FAIL, a, NULL, 3);
}

int jobs_release(struct jobs *j, const char *run_id, const char *token, const char *error, int charge,
                 jobs_status_fn cb, void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.status = cb;
    const char *a[4] = {run_id, token, error ? error : "", charge ? "1" : "0"};
    return send_script(j, o, S_RELEASE, a, NULL, 4);
}

int jobs_abandon(struct jobs *j, const char *run_id, const char *token, jobs_status_fn cb, void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.status = cb;
    const char *a[2] = {run_id, token};
    return send_script(j, o, S_ABANDON, a, NULL, 2);
}

int jobs_resolve(struct jobs *j, const char *run_id, const char *token, const char *hash, jobs_resolve_fn cb,
                 void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.resolve = cb;
    const char *a[3] = {run_id, token, hash};
    return send_script(j, o, S_RESOLVE, a, NULL, 3);
}

int jobs_hooks_take(struct jobs *j, size_t max, jobs_hooks_fn cb, void *arg) {
    char m[24];
    snprintf(m, sizeof m, "%zu", max ? max : 1);
    struct jop *o = jop_new(arg);
    o->cb.hooks = cb;
    const char *a[1] = {m};
    return send_script(j, o, S_HOOKS_TAKE, a, NULL, 1);
}

int jobs_hook_attempt(struct jobs *j, const char *entry, const char *job_id, uint64_t attempts, jobs_status_fn cb,
                      void *arg) {
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)attempts);
    struct jop *o = jop_new(arg);
    o->cb.status = cb;
    const char *a[3] = {entry, job_id, n};
    return send_script(j, o, S_HOOK_ATTEMPT, a, NULL, 3);
}

int jobs_hook_done(struct jobs *j, const char *entry, const char *job_id, const char *outcome, uint64_t attempts,
                   jobs_status_fn cb, void *arg) {
    char n[24];
    snprintf(n, sizeof n, "%llu", (unsigned long long)attempts);
    struct jop *o = jop_new(arg);
    o->cb.status = cb;
    const char *a[4] = {entry, job_id, outcome, n};
    return send_script(j, o, S_HOOK_DONE, a, NULL, 4);
}

int jobs_stats(struct jobs *j, jobs_stats_fn cb, void *arg) {
    struct jop *o = jop_new(arg);
    o->cb.stats = cb;
    return send_script(j, o, S_STATS, NULL, NULL, 0);
}
