/* The per-trace computation of the analyzer's kernel (no Python here; see _kernel.c). */
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

/* exclusive-time buckets of trace_summaries: db (db + connect), cache, http, template, self */
static const int BUCKET[7] = {4, 0, 0, 1, 2, 3, 4};

int buf_put(buf_t *b, const void *v, size_t size) {
    if (b->len + size > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + size) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, v, size);
    b->len += size;
    return 0;
}


static inline int rec_lt(const rec_t *x, const rec_t *y) {
    if (x->a != y->a) return x->a < y->a;
    if (x->b != y->b) return x->b < y->b;
    if (x->c != y->c) return x->c < y->c;
    return x->d < y->d;
}


/* an in-place quicksort of v[0..n) by LT(&x, &y) (median-of-three pivot, Hoare partition,
 * insertion sort below 17 elements; recursion only into the smaller side) */
#define DEFINE_SORT(NAME, T, LT)                                                          \
    static void NAME(T *v, size_t n) {                                                    \
        while (n > 16) {                                                                  \
            size_t m = n / 2;                                                             \
            T t;                                                                          \
            if (LT(&v[m], &v[0])) { t = v[m]; v[m] = v[0]; v[0] = t; }                    \
            if (LT(&v[n - 1], &v[0])) { t = v[n - 1]; v[n - 1] = v[0]; v[0] = t; }        \
            if (LT(&v[n - 1], &v[m])) { t = v[n - 1]; v[n - 1] = v[m]; v[m] = t; }        \
            T pivot = v[m];                                                               \
            size_t i = 0, j = n - 1;                                                      \
            for (;;) {                                                                    \
                while (LT(&v[i], &pivot)) i++;                                            \
                while (LT(&pivot, &v[j])) j--;                                            \
                if (i >= j) break;                                                        \
                t = v[i]; v[i] = v[j]; v[j] = t;                                          \
                i++;                                                                      \
                j--;                                                                      \
            }                                                                             \
            size_t left = j + 1;                                                          \
            if (left < n - left) {                                                        \
                NAME(v, left);                                                            \
                v += left;                                                                \
                n -= left;                                                                \
            } else {                                                                      \
                NAME(v + left, n - left);                                                 \
                n = left;                                                                 \
            }                                                                             \
        }                                                                                 \
        for (size_t i = 1; i < n; i++) {                                                  \
            T x = v[i];                                                                   \
            size_t j = i;                                                                 \
            while (j > 0 && LT(&x, &v[j - 1])) { v[j] = v[j - 1]; j--; }                  \
            v[j] = x;                                                                     \
        }                                                                                 \
    }

static inline int u64_lt(const uint64_t *x, const uint64_t *y) { return *x < *y; }
DEFINE_SORT(rec_sort, rec_t, rec_lt)
DEFINE_SORT(u64_sort, uint64_t, u64_lt)

/* number of distinct values of v[0..n) (sorts v) */
static size_t n_distinct(uint64_t *v, size_t n) {
    u64_sort(v, n);
    size_t d = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) d += v[i] != v[i - 1];
    return d;
}

/* the most frequent nonzero value of v[0..n) (0 = none); a tie goes to the smallest (sorts v) */
static uint64_t mode_nonzero(uint64_t *v, size_t n) {
    size_t same = 1;
    while (same < n && v[same] == v[0]) same++;
    if (same >= n) return n ? v[0] : 0; /* the common case: one value (no sort) */
    u64_sort(v, n);
    uint64_t best = 0;
    size_t best_n = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j] == v[i]) j++;
        if (v[i] != 0 && j - i > best_n) { best = v[i]; best_n = j - i; }
        i = j;
    }
    return best;
}

#define PUT(b, v)                                         \
    do {                                                  \
        __typeof__(v) _v = (v);                           \
        if (buf_put(&(b), &_v, sizeof _v) < 0) return -1; \
    } while (0)

/* the trace's span ids -> their positions: open addressing in w->sid_keys/w->sid_pos (2^bits slots,
 * at least twice the spans); on a repeated span id the first position wins */
static unsigned sid_index(const spans_t *s, size_t m, scratch_t *w) {
    unsigned bits = 4;
    while (((size_t)1 << bits) < 2 * m) bits++;
    size_t mask = ((size_t)1 << bits) - 1;
    memset(w->sid_pos, 0xff, (mask + 1) * sizeof *w->sid_pos);
    for (size_t j = 0; j < m; j++) {
        size_t h = (size_t)((s->sid[j] * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
        while (w->sid_pos[h] >= 0 && w->sid_keys[h] != s->sid[j]) h = (h + 1) & mask;
        if (w->sid_pos[h] < 0) {
            w->sid_keys[h] = s->sid[j];
            w->sid_pos[h] = (int32_t)j;
        }
    }
    return bits;
}

/* position in the trace of the span with span id `sid` (see sid_index), or -1 */
static long find_sid(const scratch_t *w, unsigned bits, uint64_t sid) {
    size_t mask = ((size_t)1 << bits) - 1, h = (size_t)((sid * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
    while (w->sid_pos[h] >= 0) {
        if (w->sid_keys[h] == sid) return w->sid_pos[h];
        h = (h + 1) & mask;
    }
    return -1;
}

/* the repeat groups of one spec in one trace (its s->n gathered rows) */
static int trace_repeats(const spans_t *s, spec_t *sp, scratch_t *w, const rec_t *children,
                         size_t n_children) {
    size_t k = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (!(s->flags[i] >> sp->bit & 1)) continue;
        rec_t r;
        if (sp->per_params) {
            r.a = s->op_h[i];
            r.b = s->params_e[i];
        } else {
            int32_t p = w->parent[i];
            r.a = (p >= 0 && w->is_iter[p]) ? s->pid[p] : s->pid[i]; /* the anchor */
            r.b = s->op_h[i];
        }
        r.c = s->start[i];
        r.d = s->sid[i];
        r.i = i;
        w->recs[k++] = r;
    }
    if ((long)k < sp->min_count) return 0;
    rec_sort(w->recs, k);
    for (size_t g = 0; g < k;) {
        size_t e = g;
        while (e < k && w->recs[e].a == w->recs[g].a && w->recs[e].b == w->recs[g].b) e++;
        size_t n = e - g;
        const rec_t *run = w->recs + g;
        g = e;
        if ((long)n < sp->min_count) continue;
        size_t distinct = 1;
        if (!sp->per_params) {
            for (size_t q = 0; q < n; q++) w->vals[q] = s->params_e[run[q].i];
            distinct = n_distinct(w->vals, n);
            if ((long)distinct < sp->min_count) continue;
        }
        int64_t total = 0, mx = 0, last_end = INT64_MIN;
        int8_t uselist = -1;
        for (size_t q = 0; q < n; q++) {
            uint32_t i = run[q].i;
            total += s->dur[i];
            if (q == 0 || s->dur[i] > mx) mx = s->dur[i];
            if (s->start[i] + s->dur[i] > last_end) last_end = s->start[i] + s->dur[i];
            if (s->uselist[i] >= 0) uselist = (int8_t)(uselist == 1 || s->uselist[i] == 1);
        }
        uint32_t first = run[0].i; /* the earliest start (ties: the smallest span id) */
        PUT(sp->tix, s->tix[first]);
        PUT(sp->op_h, s->op_h[first]);
        PUT(sp->n, (int64_t)n);
        PUT(sp->n_distinct, (int64_t)distinct);
        PUT(sp->total_ns, total);
        PUT(sp->max_ns, mx);
        PUT(sp->first_start, s->start[first]);
        PUT(sp->last_end, last_end);
        for (size_t q = 0; q < n; q++) w->vals[q] = s->code_h[run[q].i];
        PUT(sp->code_h, mode_nonzero(w->vals, n));
        for (size_t q = 0; q < n; q++) w->vals[q] = s->orm_h[run[q].i];
        PUT(sp->orm_h, mode_nonzero(w->vals, n));
        PUT(sp->uselist, uselist);
        PUT(sp->first_pid, s->pid[first]);
        PUT(sp->first_sid, s->sid[first]);
        for (size_t q = 0; q < n; q++) w->vals[q] = s->sid[run[q].i];
        u64_sort(w->vals, n);
        PUT(sp->ids_len, (int32_t)n);
        if (buf_put(&sp->ids, w->vals, n * sizeof(uint64_t)) < 0) return -1;
        if (!sp->with_source) continue;
        /* the source: the latest DB span with another statement under the first repeat's parent
         * that started no later than it (children are sorted by (pid, start, sid)) */
        long best = -1;
        uint64_t pid = s->pid[first];
        size_t lo = 0, hi = n_children;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (children[mid].a < pid) lo = mid + 1; else hi = mid;
        }
        for (size_t q = lo; q < n_children && children[q].a == pid; q++) {
            uint32_t i = children[q].i;
            if (s->cat[i] == C_DB && s->start[i] <= s->start[first] && s->sid[i] != s->sid[first] &&
                s->op_h[i] != 0 && s->op_h[i] != s->op_h[first])
                best = (long)i; /* later in the run = later start (or equal start, larger id) */
        }
        PUT(sp->src_has, (uint8_t)(best >= 0));
        PUT(sp->src_key_h, best >= 0 ? s->key_h[best] : 0);
        PUT(sp->src_sid, best >= 0 ? s->sid[best] : 0);
        PUT(sp->src_orm_h, best >= 0 ? s->orm_h[best] : 0);
        PUT(sp->src_uselist, (int8_t)(best >= 0 ? s->uselist[best] : -1));
    }
    return 0;
}

/* summaries and repeat groups of one trace: its rows s[0..s->n), gathered by gather_trace */
int one_trace(const spans_t *s, scratch_t *w, traces_t *out, spec_t *specs, int n_specs) {
    size_t m = s->n;
    int32_t counts[6] = {0}; /* spans, db, cache, cache hits, cache misses, http */
    int64_t dur[5] = {0};    /* summed durations: db, cache, http, template, self */
    int64_t cov[5] = {0};    /* covered by children, by the parent's bucket */
    size_t n_children = 0;
    for (uint32_t i = 0; i < m; i++) {
        int c = s->cat[i];
        counts[0]++;
        counts[1] += c == C_DB;
        if (c == C_CACHE) {
            counts[2]++;
            counts[3] += s->cache_hit[i] == 1;
            counts[4] += s->cache_hit[i] == 0;
        }
        counts[5] += c == C_HTTP;
        dur[BUCKET[c]] += s->dur[i];
        if (s->pid[i] != 0) w->children[n_children++] = (rec_t){s->pid[i], 0, s->start[i], s->sid[i], i};
        w->is_iter[i] = 0;
    }
    unsigned bits = sid_index(s, m, w);
    rec_sort(w->children, n_children);
    /* covered time: per parent, the union of its children's intervals clipped to the parent */
    for (size_t g = 0; g < n_children;) {
        size_t e = g;
        while (e < n_children && w->children[e].a == w->children[g].a) e++;
        long pos = find_sid(w, bits, w->children[g].a);
        if (pos >= 0) {
            uint32_t p = (uint32_t)pos;
            int64_t ps = s->start[p], pe = s->start[p] + s->dur[p], covered = 0, prev = INT64_MIN;
            for (size_t q = g; q < e; q++) {
                uint32_t i = w->children[q].i;
                int64_t cs = s->start[i] > ps ? s->start[i] : ps;
                int64_t ce = s->start[i] + s->dur[i] < pe ? s->start[i] + s->dur[i] : pe;
                if (ce <= cs) continue;
                int64_t from = cs > prev ? cs : prev;
                if (ce > from) covered += ce - from;
                if (ce > prev) prev = ce;
            }
            cov[BUCKET[s->cat[p]]] += covered;
        }
        g = e;
    }
    if (n_specs) {
        /* each span's parent (for the anchors) */
        for (uint32_t i = 0; i < m; i++)
            w->parent[i] = s->pid[i] ? (int32_t)find_sid(w, bits, s->pid[i]) : -1;
        /* iteration spans: internal/template spans whose name occurs 2+ times under their parent */
        size_t k = 0;
        for (uint32_t i = 0; i < m; i++)
            if ((s->cat[i] == C_OTHER || s->cat[i] == C_TEMPLATE) && s->pid[i] != 0)
                w->recs[k++] = (rec_t){s->pid[i], s->key_h[i], 0, 0, i};
        rec_sort(w->recs, k);
        for (size_t g = 0; g < k;) {
            size_t e = g;
            while (e < k && w->recs[e].a == w->recs[g].a && w->recs[e].b == w->recs[g].b) e++;
            if (e - g >= 2)
                for (size_t q = g; q < e; q++) w->is_iter[w->recs[q].i] = 1;
            g = e;
        }
        for (int q = 0; q < n_specs; q++)
            if (trace_repeats(s, &specs[q], w, w->children, n_children) < 0) return -1;
    }
    PUT(out->tix, s->tix[0]);
    if (buf_put(&out->counts, counts, sizeof counts) < 0) return -1;
    if (buf_put(&out->dur, dur, sizeof dur) < 0) return -1;
    if (buf_put(&out->cov, cov, sizeof cov) < 0) return -1;
    return 0;
}

/* trace numbers: open addressing on tix; returns the number of traces, fills tr[i] */
static long number_traces(const input_t *in, uint32_t *tr) {
    size_t cap = 1024;
    while (cap < in->n / 4 + 1024) cap *= 2; /* grown below if the traces are smaller than 4 spans */
    uint64_t *keys = NULL;
    uint32_t *vals = NULL;
    long n_traces;
retry:
    free(keys);
    free(vals);
    keys = calloc(cap, sizeof *keys);
    vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) { free(keys); free(vals); return -1; }
    for (size_t h = 0; h < cap; h++) vals[h] = UINT32_MAX;
    n_traces = 0;
    uint64_t last = 0;
    uint32_t last_t = UINT32_MAX;
    for (size_t c = 0; c < in->n_chunks; c++) {
        const uint64_t *tix = (const uint64_t *)in->col[0][c];
        for (size_t i = in->lo[c]; i < in->lo[c + 1]; i++) {
            uint64_t t = tix[i - in->lo[c]];
            if (last_t != UINT32_MAX && t == last) { tr[i] = last_t; continue; }
            size_t h = (size_t)((t * 0x9e3779b97f4a7c15ULL) >> 20) & (cap - 1);
            while (vals[h] != UINT32_MAX && keys[h] != t) h = (h + 1) & (cap - 1);
            if (vals[h] == UINT32_MAX) {
                if ((size_t)(n_traces + 1) * 2 > cap) { cap *= 2; goto retry; }
                keys[h] = t;
                vals[h] = (uint32_t)n_traces++;
            }
            tr[i] = last_t = vals[h];
            last = t;
        }
    }
    free(keys);
    free(vals);
    return n_traces;
}


long bucket_by_trace(const input_t *in, uint32_t **order_out, uint32_t **start_out) {
    uint32_t *tr = malloc((in->n ? in->n : 1) * sizeof *tr);
    uint32_t *order = malloc((in->n ? in->n : 1) * sizeof *order);
    long n_traces = tr && order ? number_traces(in, tr) : -1;
    uint32_t *start_of = n_traces >= 0 ? calloc((size_t)n_traces + 2, sizeof *start_of) : NULL;
    if (!start_of) {
        free(tr);
        free(order);
        return -1;
    }
    for (size_t i = 0; i < in->n; i++) start_of[tr[i] + 1]++;
    for (long t = 0; t < n_traces; t++) start_of[t + 1] += start_of[t];
    for (size_t i = 0; i < in->n; i++) order[start_of[tr[i]]++] = (uint32_t)i;
    for (long t = n_traces; t > 0; t--) start_of[t] = start_of[t - 1];
    start_of[0] = 0;
    free(tr);
    *order_out = order;
    *start_out = start_of;
    return n_traces;
}


void gather_trace(const input_t *in, const uint32_t *rows, size_t m, scratch_t *w, spans_t *s) {
    size_t lo = 0, hi = in->n_chunks; /* the piece holding rows[0]: the last c with lo[c] <= rows[0] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (in->lo[mid] <= rows[0]) lo = mid; else hi = mid;
    }
    size_t c = lo;
    for (size_t j = 0; j < m; j++) {
        size_t r = rows[j];
        while (r >= in->lo[c + 1]) c++;
        size_t off = r - in->lo[c];
        for (int k = 0; k < N_COLS; k++) {
            if (SIZES[k] == 8)
                ((uint64_t *)w->cols[k])[j] = ((const uint64_t *)in->col[k][c])[off];
            else
                ((uint8_t *)w->cols[k])[j] = ((const uint8_t *)in->col[k][c])[off];
        }
    }
    s->tix = (const uint64_t *)w->cols[0]; s->sid = (const uint64_t *)w->cols[1];
    s->pid = (const uint64_t *)w->cols[2]; s->start = (const int64_t *)w->cols[3];
    s->dur = (const int64_t *)w->cols[4]; s->cat = (const uint8_t *)w->cols[5];
    s->key_h = (const uint64_t *)w->cols[6]; s->op_h = (const uint64_t *)w->cols[7];
    s->params_e = (const uint64_t *)w->cols[8]; s->code_h = (const uint64_t *)w->cols[9];
    s->orm_h = (const uint64_t *)w->cols[10]; s->uselist = (const int8_t *)w->cols[11];
    s->cache_hit = (const int8_t *)w->cols[12]; s->flags = (const uint8_t *)w->cols[13];
    s->n = m;
}
