/* The API context (api.h): one per worker, created by the server. */
#include "api/api_int.h"

#include <stdlib.h>

int api_create(struct api_env *env, struct api **out) {
    struct api *api = xcalloc(1, sizeof *api);
    api->env = env;
    registry_init(&api->streams);
    buf_init(&api->out, 0);
    buf_init(&api->pcm, 0);
    int r = sync_open(&api->sync, env->loop, env->cfg, &api->streams);
    if (r != 0) {
        api_destroy(api);
        return r;
    }
    *out = api;
    return 0;
}

void api_close(struct api *api) { sync_close(&api->sync); }

void api_destroy(struct api *api) {
    if (!api) return;
    buf_cleanup(&api->pcm);
    buf_cleanup(&api->out);
    registry_cleanup(&api->streams);
    free(api);
}
