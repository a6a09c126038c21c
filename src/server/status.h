/* The worker's own routes: GET /v1/health, GET /v1/metrics (JSON),
 * GET /metrics (Prometheus) and GET /metrics/streaming, docs/API.md
 * "GET /v1/health", "GET /v1/metrics" and "GET /metrics/streaming". ctx is
 * the struct worker. */
#ifndef ASRD_SERVER_STATUS_H
#define ASRD_SERVER_STATUS_H

#include "net/http.h"

void status_health(void *ctx, struct http_conn *hc, struct http_req *req);
void status_metrics_json(void *ctx, struct http_conn *hc, struct http_req *req);
void status_metrics_prometheus(void *ctx, struct http_conn *hc, struct http_req *req);

/* GET /metrics/streaming: the streaming figures of the instance in the
 * JSON shape of docs/API.md "GET /metrics/streaming" (seed 004's
 * dashboards): active connections, stream latency mean and 95th percentile,
 * engine failures, dropped segments, the adaptive window. Never guarded. */
void status_metrics_streaming(void *ctx, struct http_conn *hc, struct http_req *req);

#endif
