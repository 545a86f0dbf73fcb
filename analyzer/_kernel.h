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
/* the input columns, in _kernel.c's COLS order: tix, sid, pid, start_ns, dur_ns, cat, key_h, op_h,
 * params_e, code_h, orm_h, uselist, cache_hit, flags; their sizes in bytes per row */
#define N_COLS 14
static const size_t SIZES[N_COLS] = {8, 8, 8, 8, 8, 1, 8, 8, 8, 8, 8, 1, 1, 1};

/* the chunk's rows as the caller holds them: each column in n_chunks pieces of equal lengths across
 * columns (e.g. the record batches of an Arrow table), read in place */
typedef struct {
    size_t n, n_chunks;
    size_t *lo;               /* n_chunks + 1 entries: piece c holds rows lo[c] .. lo[c + 1) */
    const char **col[N_COLS]; /* col[k][c]: column k's piece c */
} input_t;

/* one trace's rows, gathered into contiguous scratch arrays (see gather_trace) */
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
    rec_t *children, *recs;
    uint64_t *sid_keys; /* the span-id index (sid_index in _kernel_trace.c), sized for the largest trace */
    int32_t *sid_pos;
    uint64_t *vals;
    int32_t *parent;  /* per span of the trace: index (into the trace) of its parent, -1 none */
    uint8_t *is_iter; /* per span of the trace: an iteration span (its children anchor above it) */
    char *cols[N_COLS]; /* the trace's rows, column by column (gather_trace) */
} scratch_t;


int buf_put(buf_t *b, const void *v, size_t size);
/* summaries and repeat groups of one trace: its rows s[0..s->n), gathered by gather_trace */
int one_trace(const spans_t *s, scratch_t *w, traces_t *out, spec_t *specs, int n_specs);
/* the rows bucketed by trace: order[start_of[t] .. start_of[t + 1]) are trace t's rows (ascending);
 * returns the number of traces, -1 when out of memory */
long bucket_by_trace(const input_t *in, uint32_t **order_out, uint32_t **start_out);
/* copy the rows rows[0..m) (ascending) of `in` into w->cols and point *s at them */
void gather_trace(const input_t *in, const uint32_t *rows, size_t m, scratch_t *w, spans_t *s);
#endif
