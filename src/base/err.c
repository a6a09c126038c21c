#include <stddef.h>

#include "base/err.h"

struct err_row { int val; const char *code; int status; const char *msg; };

static const struct err_row err_rows[] = {
#define ASR_ERR_ROW_(name, val, code, status, msg) {val, code, status, msg},
    ASR_ERR_TABLE(ASR_ERR_ROW_)
#undef ASR_ERR_ROW_
};

static const struct err_row *err_find(int err) {
    for (unsigned i = 0; i < sizeof(err_rows) / sizeof(err_rows[0]); i++)
        if (err_rows[i].val == err) return &err_rows[i];
    return NULL;
}

const char *asr_err_code(int err) {
    const struct err_row *r = err_find(err);
    return r ? r->code : "INTERNAL";
}

const char *asr_strerror(int err) {
    const struct err_row *r = err_find(err);
    return r ? r->msg : "unknown error";
}

int asr_err_http_status(int err) {
    const struct err_row *r = err_find(err);
    return r ? r->status : 500;
}
