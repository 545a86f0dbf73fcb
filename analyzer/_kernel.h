/* The analyzer's per-trace kernel: shared types (see _kernel.c for the module, _kernel_trace.c for
 * the per-trace computation, tracehound.analyzer.kernel for what the results mean). */
#ifndef TRACEHOUND_KERNEL_H
#define TRACEHOUND_KERNEL_H
#include <stddef.h>
#include <stdint.h>

/* category codes: must match kernel.CAT_CODES */
enum { C_OTHER = 0, C_DB = 1, C_CONNECT = 2, C_CACHE = 3, C_HTTP = 4, C_TEMPLATE = 5, C_SERVER = 6 };

/* ---- growable output arrays ---- */
typedef struct {
    char *p;
    size_t len, cap; /* bytes */
} buf_t;


/* ---- sorting: records ordered by (a, b, c, d) ---- */
typedef struct {
    uint64_t a, b;
    int64_t c;
    uint64_t d;
    uint32_t i;
} rec_t;


/* ---- inputs ---- */
typedef struct {
    const uint64_t *tix, *sid, *pid, *key_h, *op_h, *params_e, *code_h, *orm_h;
    const int64_t *start, *dur;
    const uint8_t *cat, *flags;
    const int8_t *uselist, *cache_hit;
    size_t n;
} spans_t;

/* one repeat detector's grouping: spans with flag bit `bit`, keyed by (anchor, op) or (op, params) */
typedef struct {
    int bit, per_params, with_source;
    long min_count;
    buf_t tix, op_h, n, n_distinct, total_ns, max_ns, first_start, last_end, code_h, orm_h, uselist,
        first_pid, first_sid, ids_len, ids;
    buf_t src_has, src_key_h, src_sid, src_orm_h, src_uselist;
} spec_t;

/* per-trace results */
typedef struct {
    buf_t tix, counts, dur, cov; /* counts: 6 x int32 per trace; dur, cov: 5 x int64 per trace */
} traces_t;

/* scratch buffers sized for the largest trace */
typedef struct {
    rec_t *by_sid, *children, *recs;
    uint64_t *vals;
    int32_t *parent;  /* per span of the trace: index (into the trace) of its parent, -1 none */
    uint8_t *is_iter; /* per span of the trace: an iteration span (its children anchor above it) */
} scratch_t;


int buf_put(buf_t *b, const void *v, size_t size);
/* summaries and repeat groups of one trace: its rows idx[0..m) */
int one_trace(const spans_t *s, const uint32_t *idx, size_t m, scratch_t *w, traces_t *out, spec_t *specs,
              int n_specs);
/* the rows bucketed by trace: order[start_of[t] .. start_of[t + 1]) are trace t's rows; returns the
 * number of traces, -1 when out of memory */
long bucket_by_trace(const spans_t *s, uint32_t **order_out, uint32_t **start_out);
#endif
