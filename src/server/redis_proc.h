/* The private redis-server behind the default session store
 * (ASR_REDIS_URL empty; docs/internals/store.md, "The embedded store").
 *
 * The master starts it before it forks the workers and hands them its
 * unix:// URL, so every worker of the instance shares one session store:
 * resume works whichever worker the kernel picks, and the global limit and
 * the health figures describe the instance. It listens only on a unix socket
 * in a private runtime directory (mode 0700, made under ASR_RUNTIME_DIR,
 * else $XDG_RUNTIME_DIR, else /tmp, named asrd-<uid>-<master pid>), has no
 * TCP port, no persistence and a memory bound (ASR_REDIS_MAXMEMORY_MB,
 * noeviction). It runs in a process group of its own, so a terminal's
 * Ctrl-C reaches only the master and the workers, and dies with the master
 * (PR_SET_PDEATHSIG SIGKILL: a kill -9 of the master leaves no redis-server
 * behind). The master restarts it when it dies (100 ms doubling to 5 s;
 * reset after 30 s of life): its records are lost then, and the workers
 * reconnect through the store's own reconnect logic.
 *
 * Master-only, single-threaded, module-static state: one per process. */
#ifndef ASRD_REDIS_PROC_H
#define ASRD_REDIS_PROC_H

#include <stddef.h>
#include <sys/types.h>

#include "base/config.h"

/* Makes the runtime directory, writes redis.conf there, starts
 * cfg->redis_server and waits (5 s at most) until its socket accepts. On 0,
 * url holds "unix://<dir>/redis.sock". Otherwise returns 2 (the settings
 * cannot work: no binary, bad directory) or 1 (it did not start), after a
 * message on stderr (with the tail of its log), and leaves nothing behind. */
int redis_proc_start(const struct config *cfg, char *url, size_t urllen);

/* The master reaped pid: returns 1 when it was the redis-server (then a
 * restart is scheduled unless stopping), 0 otherwise. */
int redis_proc_reaped(pid_t pid, int status, int stopping);

/* Once per master loop turn: starts the redis-server again once its
 * restart time has come. */
void redis_proc_tick(void);

/* Stops it (SIGTERM; SIGKILL after 5 s) and removes the runtime directory.
 * Safe to call when it was never started. */
void redis_proc_stop(void);

/* Its pid (0 when not running), for logs and tests. */
pid_t redis_proc_pid(void);

#endif
