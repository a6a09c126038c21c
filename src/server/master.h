/* The master process (nginx's model): it owns the listening sockets, forks
 * ASR_WORKERS workers and does no client I/O.
 *
 * - One listening socket per worker slot, all bound to ASR_HOST:ASR_PORT
 *   with SO_REUSEPORT, so the kernel spreads connections over the slots.
 *   The master keeps every socket open; a worker inherits its slot's socket
 *   across fork(). A replacement worker takes over the same socket, so
 *   connections waiting in its accept queue are not reset when a worker
 *   exits or is restarted.
 * - A worker that dies is restarted after a backoff (100 ms doubling to
 *   10 s; reset once a worker has lived 30 s).
 * - SIGTERM/SIGINT are forwarded to every worker (graceful drain, see
 *   worker.h); the master exits when the last worker has. A second signal is
 *   forwarded too (workers stop at once).
 * - SIGHUP: rolling restart. Slot by slot, a new worker is started on the
 *   slot's socket; once it reports that it listens, the old one is told to
 *   drain (SIGTERM). No connection is refused meanwhile.
 *
 * Signals are blocked in the master and taken with sigtimedwait(), so there
 * is no handler and no async-signal-safety question; workers unblock them
 * once their loop has installed its own (worker_run). */
#ifndef ASRD_MASTER_H
#define ASRD_MASTER_H

#include "base/config.h"

/* Runs the master until every worker has exited after a shutdown signal.
 * Returns the process exit status (0, or 1/2 when the sockets cannot be
 * set up). cfg->worker_id is the id prefix; worker i is "<prefix><i>". */
int master_run(const struct config *cfg);

#endif
