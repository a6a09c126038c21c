/* rest: the driver of REST uploads (docs/LOAD.md "Scenarios", rest):
 * --rest-concurrency keep-alive HTTP/1.1 clients POST the audio file to
 * /v1/transcribe back to back (docs/API.md "REST"), for --duration seconds
 * or until --requests have been sent; latency per request, responses by
 * status, requests without a response by cause. A failed connection is
 * retried 100 ms later, so a refusing server is not hammered. The rest
 * scenario (sc_rest) is defined with it. */
#ifndef ASRD_LOAD_REST_H
#define ASRD_LOAD_REST_H

#include "scenario.h"

extern const struct load_driver rest_driver;

#endif
