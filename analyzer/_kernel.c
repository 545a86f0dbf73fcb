/* The analyzer's per-trace kernel: one pass over a chunk's span facts, trace by trace.
 *
 * The SQL path (summaries.COVERED_SQL, detectors/_repeats.py) computes the same results with
 * set-based statements over the whole chunk: a window partitioned by parent for the covered time,
 * GROUP BYs on 64-bit group keys for the repeat groups. Both are dominated by partitioning and
 * sorting millions of rows. Here the spans are first bucketed by trace (a counting sort on a trace
 * number from a small hash table), then each trace's few dozen spans are sorted and swept while they
 * sit in the CPU cache. See analyzer/kernel.py for the inputs, outputs and their meaning; this file
 * only computes.
 *
 * Input: per column, one contiguous array of n rows or a list of pieces (any objects with the buffer
 * protocol, e.g. numpy arrays; the pieces of an Arrow table's record batches), read in place.
 * Output: a dict of bytes objects (raw little-endian arrays) per result table.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

static PyObject *bytes_of(buf_t *b) {
    PyObject *o = PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->len);
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    return o;
}

static int set_bytes(PyObject *d, const char *name, buf_t *b) {
    PyObject *o = bytes_of(b);
    if (!o) return -1;
    int rc = PyDict_SetItemString(d, name, o);
    Py_DECREF(o);
    return rc;
}

/* a spec's output buffers and their names in the result dict, in one order */
#define N_SPEC_BUFS 20
static const char *SPEC_NAMES[N_SPEC_BUFS] = {
    "tix", "op_h", "n", "n_distinct", "total_ns", "max_ns", "first_start", "last_end", "code_h",
    "orm_h", "uselist", "first_pid", "first_sid", "ids_len", "ids", "src_has", "src_key_h", "src_sid",
    "src_orm_h", "src_uselist"};

static void spec_bufs(spec_t *sp, buf_t **b) {
    buf_t *all[N_SPEC_BUFS] = {
        &sp->tix, &sp->op_h, &sp->n, &sp->n_distinct, &sp->total_ns, &sp->max_ns, &sp->first_start,
        &sp->last_end, &sp->code_h, &sp->orm_h, &sp->uselist, &sp->first_pid, &sp->first_sid,
        &sp->ids_len, &sp->ids, &sp->src_has, &sp->src_key_h, &sp->src_sid, &sp->src_orm_h,
        &sp->src_uselist};
    memcpy(b, all, sizeof all);
}

/* one worker thread: the traces [t0, t1) of the chunk, into its own output buffers */
typedef struct {
    const input_t *in;
    const uint32_t *order, *start_of;
    long t0, t1;
    int n_specs, failed;
    spec_t *specs; /* the specs' settings, copied; own output buffers */
    traces_t out;
    scratch_t w;
} job_t;

static void *job_main(void *arg) {
    job_t *j = arg;
    size_t biggest = 1;
    for (long t = j->t0; t < j->t1; t++)
        if (j->start_of[t + 1] - j->start_of[t] > biggest) biggest = j->start_of[t + 1] - j->start_of[t];
    size_t slots = 16; /* the span-id index of the largest trace (sid_index) */
    while (slots < 2 * biggest) slots <<= 1;
    j->w.sid_keys = malloc(slots * sizeof(uint64_t));
    j->w.sid_pos = malloc(slots * sizeof(int32_t));
    j->w.children = malloc(biggest * sizeof(rec_t));
    j->w.recs = malloc(biggest * sizeof(rec_t));
    j->w.vals = malloc(biggest * sizeof(uint64_t));
    j->w.parent = malloc(biggest * sizeof(int32_t));
    j->w.is_iter = malloc(biggest);
    int ok = j->w.sid_keys && j->w.sid_pos && j->w.children && j->w.recs && j->w.vals && j->w.parent &&
             j->w.is_iter;
    for (int k = 0; k < N_COLS; k++) ok = ok && (j->w.cols[k] = malloc(biggest * SIZES[k])) != NULL;
    if (!ok) {
        j->failed = 1;
        return NULL;
    }
    /* each trace's rows are copied next to each other first: the sorts and sweeps then read them
     * from the cache, and the input is read in place, however the caller's columns are chunked */
    spans_t s;
    for (long t = j->t0; t < j->t1; t++) {
        size_t m = j->start_of[t + 1] - j->start_of[t];
        gather_trace(j->in, j->order + j->start_of[t], m, &j->w, &s);
        if (one_trace(&s, &j->w, &j->out, j->specs, j->n_specs) < 0) {
            j->failed = 1;
            return NULL;
        }
    }
    return NULL;
}

static void job_free(job_t *j) {
    free(j->out.tix.p); free(j->out.counts.p); free(j->out.dur.p); free(j->out.cov.p);
    for (int q = 0; j->specs && q < j->n_specs; q++) {
        buf_t *b[N_SPEC_BUFS];
        spec_bufs(&j->specs[q], b);
        for (int f = 0; f < N_SPEC_BUFS; f++) free(b[f]->p);
    }
    free(j->specs);
    free(j->w.sid_keys); free(j->w.sid_pos); free(j->w.children); free(j->w.recs); free(j->w.vals); free(j->w.parent);
    free(j->w.is_iter);
    for (int k = 0; k < N_COLS; k++) free(j->w.cols[k]);
}

/* append job b's outputs to job a's (b's buffers stay b's) */
static int job_merge(job_t *a, job_t *b) {
    buf_t *pa[4] = {&a->out.tix, &a->out.counts, &a->out.dur, &a->out.cov};
    buf_t *pb[4] = {&b->out.tix, &b->out.counts, &b->out.dur, &b->out.cov};
    for (int f = 0; f < 4; f++)
        if (pb[f]->len && buf_put(pa[f], pb[f]->p, pb[f]->len) < 0) return -1;
    for (int q = 0; q < a->n_specs; q++) {
        buf_t *ba[N_SPEC_BUFS], *bb[N_SPEC_BUFS];
        spec_bufs(&a->specs[q], ba);
        spec_bufs(&b->specs[q], bb);
        for (int f = 0; f < N_SPEC_BUFS; f++)
            if (bb[f]->len && buf_put(ba[f], bb[f]->p, bb[f]->len) < 0) return -1;
    }
    return 0;
}

static const char *COLS[N_COLS] = {"tix", "sid", "pid", "start_ns", "dur_ns", "cat", "key_h", "op_h",
                                   "params_e", "code_h", "orm_h", "uselist", "cache_hit", "flags"};
#define MAX_THREADS 16

/* the column dict's values (each a buffer, or a list/tuple of buffers: its pieces) as `in`; holds
 * views[k * n_chunks + c] (released by release_input); -1 with a Python error set */
static int read_input(PyObject *cols, input_t *in, Py_buffer **views_out, size_t *n_views) {
    Py_buffer *views = NULL;
    PyObject *pieces[N_COLS] = {NULL};
    int rc = -1;
    *n_views = 0;
    for (int k = 0; k < N_COLS; k++) {
        PyObject *o = PyDict_GetItemString(cols, COLS[k]);
        if (!o) { PyErr_Format(PyExc_KeyError, "missing column %s", COLS[k]); goto done; }
        pieces[k] = (PyList_Check(o) || PyTuple_Check(o)) ? PySequence_Fast(o, "") : PyTuple_Pack(1, o);
        if (!pieces[k]) goto done;
        if (PySequence_Fast_GET_SIZE(pieces[k]) != PySequence_Fast_GET_SIZE(pieces[0])) {
            PyErr_Format(PyExc_ValueError, "column %s has %zd pieces, not %zd", COLS[k],
                         PySequence_Fast_GET_SIZE(pieces[k]), PySequence_Fast_GET_SIZE(pieces[0]));
            goto done;
        }
    }
    size_t n_chunks = (size_t)PySequence_Fast_GET_SIZE(pieces[0]);
    views = calloc(N_COLS * n_chunks + 1, sizeof *views);
    in->lo = calloc(n_chunks + 1, sizeof *in->lo);
    for (int k = 0; k < N_COLS; k++) in->col[k] = calloc(n_chunks + 1, sizeof(char *));
    for (int k = 0; k < N_COLS; k++)
        if (!in->col[k]) { PyErr_NoMemory(); goto done; }
    if (!views || !in->lo) { PyErr_NoMemory(); goto done; }
    in->n_chunks = n_chunks;
    for (int k = 0; k < N_COLS; k++)
        for (size_t c = 0; c < n_chunks; c++) {
            Py_buffer *v = &views[k * n_chunks + c];
            if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(pieces[k], c), v, PyBUF_C_CONTIGUOUS) < 0) goto done;
            (*n_views)++;
            size_t rows = (size_t)v->len / SIZES[k];
            if (k == 0) in->lo[c + 1] = in->lo[c] + rows;
            else if (rows != in->lo[c + 1] - in->lo[c]) {
                PyErr_Format(PyExc_ValueError, "column %s has %zu rows in piece %zu, not %zu", COLS[k], rows, c,
                             in->lo[c + 1] - in->lo[c]);
                goto done;
            }
            in->col[k][c] = v->buf;
        }
    in->n = in->lo[n_chunks];
    rc = 0;
done:
    for (int k = 0; k < N_COLS; k++) Py_XDECREF(pieces[k]);
    *views_out = views;
    return rc;
}

static void release_input(input_t *in, Py_buffer *views, size_t n_views) {
    for (size_t v = 0; v < n_views; v++) PyBuffer_Release(&views[v]);
    free(views);
    free(in->lo);
    for (int k = 0; k < N_COLS; k++) free((void *)in->col[k]);
}

static PyObject *result_dict(job_t *j) {
    PyObject *result = PyDict_New(), *traces = PyDict_New(), *groups = PyList_New(0);
    if (!result || !traces || !groups || PyDict_SetItemString(result, "traces", traces) < 0 ||
        PyDict_SetItemString(result, "groups", groups) < 0)
        goto fail;
    if (set_bytes(traces, "tix", &j->out.tix) < 0 || set_bytes(traces, "counts", &j->out.counts) < 0 ||
        set_bytes(traces, "dur", &j->out.dur) < 0 || set_bytes(traces, "cov", &j->out.cov) < 0)
        goto fail;
    for (int q = 0; q < j->n_specs; q++) {
        PyObject *d = PyDict_New();
        if (!d || PyList_Append(groups, d) < 0) { Py_XDECREF(d); goto fail; }
        Py_DECREF(d);
        buf_t *b[N_SPEC_BUFS];
        spec_bufs(&j->specs[q], b);
        for (int f = 0; f < N_SPEC_BUFS; f++)
            if (set_bytes(d, SPEC_NAMES[f], b[f]) < 0) goto fail;
    }
    Py_DECREF(traces);
    Py_DECREF(groups);
    return result;
fail:
    Py_XDECREF(result);
    Py_XDECREF(traces);
    Py_XDECREF(groups);
    return NULL;
}

static PyObject *run(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cols, *spec_list, *result = NULL;
    int threads = 1;
    if (!PyArg_ParseTuple(args, "O!O!|i", &PyDict_Type, &cols, &PyList_Type, &spec_list, &threads))
        return NULL;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    Py_buffer *views = NULL;
    size_t n_views = 0;
    int n_specs = (int)PyList_GET_SIZE(spec_list);
    input_t in = {0};
    spec_t *settings = NULL;
    job_t jobs[MAX_THREADS];
    memset(jobs, 0, sizeof jobs);
    uint32_t *order = NULL, *start_of = NULL;

    if (read_input(cols, &in, &views, &n_views) < 0) goto done;
    if (in.n >= UINT32_MAX) { PyErr_SetString(PyExc_ValueError, "too many rows for one chunk"); goto done; }
    for (size_t c = 0; c < in.n_chunks; c++)
        for (size_t i = 0; i < in.lo[c + 1] - in.lo[c]; i++)
            if ((uint8_t)in.col[5][c][i] > C_SERVER) {
                PyErr_Format(PyExc_ValueError, "bad category code %d", (uint8_t)in.col[5][c][i]);
                goto done;
            }
    settings = calloc(n_specs ? n_specs : 1, sizeof *settings);
    if (!settings) { PyErr_NoMemory(); goto done; }
    for (int q = 0; q < n_specs; q++) {
        PyObject *t = PyList_GET_ITEM(spec_list, q);
        if (!PyArg_ParseTuple(t, "ippl", &settings[q].bit, &settings[q].per_params,
                              &settings[q].with_source, &settings[q].min_count))
            goto done;
        if (settings[q].bit < 0 || settings[q].bit > 7) {
            PyErr_SetString(PyExc_ValueError, "spec bit must be 0-7");
            goto done;
        }
        if (settings[q].min_count < 1) settings[q].min_count = 1;
    }
    for (int k = 0; k < threads; k++) {
        jobs[k].specs = calloc(n_specs ? n_specs : 1, sizeof(spec_t));
        if (!jobs[k].specs) { PyErr_NoMemory(); goto done; }
        for (int q = 0; q < n_specs; q++) {
            jobs[k].specs[q].bit = settings[q].bit;
            jobs[k].specs[q].per_params = settings[q].per_params;
            jobs[k].specs[q].with_source = settings[q].with_source;
            jobs[k].specs[q].min_count = settings[q].min_count;
        }
        jobs[k].n_specs = n_specs;
        jobs[k].in = &in;
    }

    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    long n_traces = bucket_by_trace(&in, &order, &start_of);
    if (n_traces < 0) failed = 1;
    if (!failed) {
        /* equal shares of the spans (whole traces) per thread */
        long t = 0;
        for (int k = 0; k < threads; k++) {
            jobs[k].order = order;
            jobs[k].start_of = start_of;
            jobs[k].t0 = t;
            size_t goal = in.n / (size_t)threads * (size_t)(k + 1);
            while (t < n_traces && (k == threads - 1 || start_of[t] < goal)) t++;
            jobs[k].t1 = t;
        }
        pthread_t tids[MAX_THREADS];
        int started[MAX_THREADS] = {0};
        for (int k = 1; k < threads; k++)
            started[k] = pthread_create(&tids[k], NULL, job_main, &jobs[k]) == 0;
        job_main(&jobs[0]);
        for (int k = 1; k < threads; k++) {
            if (started[k]) pthread_join(tids[k], NULL);
            else job_main(&jobs[k]); /* no thread: do its share here */
        }
        for (int k = 0; k < threads; k++) failed |= jobs[k].failed;
        for (int k = 1; k < threads && !failed; k++) failed |= job_merge(&jobs[0], &jobs[k]) < 0;
    }
    Py_END_ALLOW_THREADS
    if (failed) { PyErr_NoMemory(); goto done; }
    result = result_dict(&jobs[0]);

done:
    release_input(&in, views, n_views);
    for (int k = 0; k < threads; k++) job_free(&jobs[k]);
    free(settings);
    free(order);
    free(start_of);
    return result;
}

static PyMethodDef METHODS[] = {
    {"run", run, METH_VARARGS,
     "run(columns: dict[str, buffer | list[buffer]], specs: list[(bit, per_params, with_source, "
     "min_count)], threads=1)"
     " -> dict\nPer-trace summaries and repeat groups of one chunk of spans (see "
     "tracehound.analyzer.kernel)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_kernel",
                                    "The analyzer's per-trace kernel (see tracehound.analyzer.kernel).",
                                    -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&MODULE); }

