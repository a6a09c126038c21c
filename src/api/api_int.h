/* What the api modules share: the fields of struct api (api/api.h). Not
 * for the server, which sees struct api as opaque. */
#ifndef ASRD_API_INT_H
#define ASRD_API_INT_H

#include "api/api.h"
#include "api/registry.h"
#include "api/sync.h"
#include "base/util.h"

struct api {
    struct api_env *env;          /* borrowed: the server's (loop, config, draining flags) */
    struct registry streams;      /* every stream of this worker (struct stream), by session id */
    struct sync sync;             /* the session store side of the streams */
    struct buf out;               /* scratch: the server message being encoded; one at a time */
    struct buf pcm;               /* scratch: a client message's decoded audio (wire_decode_client_msg) */
    /* DETACHED streams, oldest detach first (stream.c keeps it in
     * stream_transition): the resumable window's bounds evict from the head. */
    struct stream *detached_head, *detached_tail;   /* borrowed: the registry owns the streams */
    size_t n_detached;
};

#endif
