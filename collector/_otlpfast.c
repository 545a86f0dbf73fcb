/*
 * tracehound.collector._otlpfast: the common shape of an OTLP ExportTraceServiceRequest, decoded
 * straight into column buffers.
 *
 * decode(body: bytes) -> tuple | None
 *
 * Walks the protobuf wire format (https://protobuf.dev/programming-guides/encoding/) of
 * opentelemetry-proto's trace_service.proto / trace.proto once and returns the per-span fields as
 * packed buffers (see RESULT below), so no Python object is made per span. It handles only the
 * shape real exporters send; for ANYTHING else it returns None and the caller decodes the body with
 * the protobuf classes instead (collector/fastdecode.py), which explain every problem exactly as
 * before. None is returned for:
 *   - malformed wire data (truncated varint or field, a length past the end, group wire types,
 *     a known field with an unexpected wire type) -> the slow path raises DecodeError;
 *   - a span with events or links;
 *   - a singular message field given twice (protobuf would merge them);
 *   - ids that cannot be stored (trace_id not 16 bytes or all zero, span_id not 8 bytes or all
 *     zero, parent_span_id neither empty nor 8 bytes), times past int64 nanoseconds;
 *   - a string field that is not valid UTF-8 (strict: no overlongs, no surrogates, <= U+10FFFF).
 * Unknown fields are skipped, as protobuf parsers do.
 *
 * RESULT (n = number of spans, r = resources, s = scopes), a tuple of:
 *   0  n
 *   1  fixed: bytes, n records of FIXED_RECORD (little-endian, see struct fixed_rec)
 *   2  trace ids: bytes of n * 32 lowercase hex chars
 *   3  span ids: bytes of n * 16 lowercase hex chars
 *   4  parent ids: (offsets int32[n+1] bytes, data bytes): "" or 16 hex chars
 *   5  names: (offsets, data)
 *   6  trace states: (offsets, data)
 *   7  status messages: (offsets, data)
 *   8  attribute entry index: int32 bytes, for every span its KeyValues' ids, span after span
 *   9  attribute counts: int32[n] bytes
 *  10  distinct encoded KeyValues: list of bytes, position = id
 *  11  resources: list of (encoded Resource bytes, schema_url str)
 *  12  scopes: list of (encoded InstrumentationScope bytes, schema_url str)
 *  13  attribute list ids: int32[n] bytes; spans with equal lists (same KeyValues, same order)
 *      share an id, numbered in first-seen order
 *  14  first span of each attribute list id: int32 bytes
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One span's fixed-width fields, packed (read with a numpy structured dtype). */
#pragma pack(push, 1)
struct fixed_rec {
    uint64_t start;
    uint64_t end;
    int32_t kind;
    uint32_t flags;
    uint32_t dropped_attrs;
    uint32_t dropped_events;
    uint32_t dropped_links;
    int32_t status_code;
    int32_t res_idx;
    int32_t scope_idx;
};
#pragma pack(pop)

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static int buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_put(buf_t *b, const void *src, size_t n) {
    if (buf_reserve(b, n)) return -1;
    if (n) memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static int buf_i32(buf_t *b, int32_t v) { return buf_put(b, &v, 4); }

/* A string column: int32 offsets (starting with 0) and the concatenated bytes. */
typedef struct {
    buf_t offsets, data;
} strcol_t;

static int strcol_init(strcol_t *c) {
    memset(c, 0, sizeof(*c));
    return buf_i32(&c->offsets, 0);
}

static int strcol_add(strcol_t *c, const char *p, size_t n) {
    if (c->data.len + n > INT32_MAX) return -1;
    if (buf_put(&c->data, p, n)) return -1;
    return buf_i32(&c->offsets, (int32_t)c->data.len);
}

static void strcol_free(strcol_t *c) {
    free(c->offsets.data);
    free(c->data.data);
}

/* Interning of encoded KeyValues: open addressing over (pointer into the body, length). */
typedef struct {
    const char *p;
    uint32_t len;
    int32_t id; /* -1 = empty slot */
    uint64_t hash;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t mask, used;
    buf_t order; /* (const char *, uint32 len) per id, in first-seen order */
} interner_t;

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n; /* FNV-1a, 8 bytes at a time */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 1099511628211ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    h ^= h >> 32;
    return h * 0x9E3779B97F4A7C15ULL;
}

static int interner_init(interner_t *t) {
    memset(t, 0, sizeof(*t));
    t->mask = 1023;
    t->slots = malloc(sizeof(slot_t) * (t->mask + 1));
    if (!t->slots) return -1;
    for (size_t i = 0; i <= t->mask; i++) t->slots[i].id = -1;
    return 0;
}

static int interner_grow(interner_t *t) {
    size_t new_mask = t->mask * 2 + 1;
    slot_t *s = malloc(sizeof(slot_t) * (new_mask + 1));
    if (!s) return -1;
    for (size_t i = 0; i <= new_mask; i++) s[i].id = -1;
    for (size_t i = 0; i <= t->mask; i++) {
        if (t->slots[i].id < 0) continue;
        size_t j = t->slots[i].hash & new_mask;
        while (s[j].id >= 0) j = (j + 1) & new_mask;
        s[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = s;
    t->mask = new_mask;
    return 0;
}

/* The id of the encoded KeyValue p[0:n] (a new id if unseen), or -1 on allocation failure. */
static int32_t interner_id(interner_t *t, const char *p, uint32_t n) {
    uint64_t h = hash_bytes(p, n);
    size_t j = h & t->mask;
    while (t->slots[j].id >= 0) {
        slot_t *s = &t->slots[j];
        if (s->hash == h && s->len == n && memcmp(s->p, p, n) == 0) return s->id;
        j = (j + 1) & t->mask;
    }
    int32_t id = (int32_t)t->used;
    t->slots[j].p = p;
    t->slots[j].len = n;
    t->slots[j].id = id;
    t->slots[j].hash = h;
    t->used++;
    if (buf_put(&t->order, &p, sizeof(p)) || buf_put(&t->order, &n, sizeof(n))) return -1;
    if (t->used * 2 > t->mask && interner_grow(t)) return -1;
    return id;
}

static void interner_free(interner_t *t) {
    free(t->slots);
    free(t->order.data);
}

/* ---- wire format ---------------------------------------------------------------------------- */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct {
    const unsigned char *p, *end;
} reader_t;

static int read_varint(reader_t *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1; /* more than 10 bytes */
}

/* Reads a tag; *field and *wt set. Returns -1 on malformed data. */
static int read_tag(reader_t *r, uint32_t *field, int *wt) {
    uint64_t tag;
    if (read_varint(r, &tag)) return -1;
    *field = (uint32_t)(tag >> 3);
    *wt = (int)(tag & 7);
    if (*field == 0 || (tag >> 3) > 0x1FFFFFFF) return -1;
    return 0;
}

static int read_len(reader_t *r, const unsigned char **p, size_t *n) {
    uint64_t len;
    if (read_varint(r, &len)) return -1;
    if (len > (uint64_t)(r->end - r->p)) return -1;
    *p = r->p;
    *n = (size_t)len;
    r->p += len;
    return 0;
}

static int read_fixed64(reader_t *r, uint64_t *out) {
    if (r->end - r->p < 8) return -1;
    memcpy(out, r->p, 8); /* little-endian hosts only (checked at import) */
    r->p += 8;
    return 0;
}

static int read_fixed32(reader_t *r, uint32_t *out) {
    if (r->end - r->p < 4) return -1;
    memcpy(out, r->p, 4);
    r->p += 4;
    return 0;
}

/* Skips a field of an unknown number. Group wire types (3, 4) are refused. */
static int skip_field(reader_t *r, int wt) {
    uint64_t v;
    const unsigned char *p;
    size_t n;
    switch (wt) {
    case WT_VARINT:
        return read_varint(r, &v);
    case WT_I64:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 0;
    case WT_LEN:
        return read_len(r, &p, &n);
    case WT_I32:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    default:
        return -1;
    }
}

/* Strict UTF-8 (what Python's 'strict' codec and protobuf's parser accept). */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (need >= n - i) return 0; /* truncated sequence */
        for (size_t k = 1; k <= need; k++) {
            unsigned char cc = s[i + k];
            if ((cc & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += need + 1;
    }
    return 1;
}

static const char HEX[] = "0123456789abcdef";

static int put_hex(buf_t *b, const unsigned char *p, size_t n) {
    if (buf_reserve(b, 2 * n)) return -1;
    char *o = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        o[2 * i] = HEX[p[i] >> 4];
        o[2 * i + 1] = HEX[p[i] & 15];
    }
    b->len += 2 * n;
    return 0;
}

static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

/* ---- the decoder ---------------------------------------------------------------------------- */

typedef struct {
    size_t n;
    buf_t fixed, tid, sid, attr_idx, attr_counts;
    strcol_t pid, name, tstate, smsg;
    interner_t kvs;
    buf_t resources, scopes; /* pair_t records, in wire order */
} out_t;

/* An encoded Resource / InstrumentationScope and its schema_url (slices of the body). */
typedef struct {
    const unsigned char *msg, *url;
    size_t msg_n, url_n;
} pair_t;

/* Result codes: 0 ok, 1 = not the common shape (caller returns None), -1 = out of memory (the
 * decoder runs without the GIL; MemoryError is raised once it is taken back). */
#define UNSUPPORTED 1
#define NOMEM -1

static int oom(void) { return NOMEM; }

static int decode_status(const unsigned char *p, size_t n, int32_t *code, strcol_t *msg) {
    reader_t r = {p, p + n};
    const unsigned char *mp = NULL;
    size_t mn = 0;
    int32_t c = 0;
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        if (read_tag(&r, &field, &wt)) return UNSUPPORTED;
        if (field == 2) {
            if (wt != WT_LEN || read_len(&r, &mp, &mn)) return UNSUPPORTED;
        } else if (field == 3) {
            uint64_t v;
            if (wt != WT_VARINT || read_varint(&r, &v)) return UNSUPPORTED;
            c = (int32_t)(uint32_t)v;
        } else if (skip_field(&r, wt)) {
            return UNSUPPORTED;
        }
    }
    if (mn && !utf8_valid(mp, mn)) return UNSUPPORTED;
    *code = c;
    return strcol_add(msg, (const char *)mp, mn) ? oom() : 0;
}

static int decode_span(const unsigned char *p, size_t n, int32_t res_idx, int32_t scope_idx, out_t *o) {
    reader_t r = {p, p + n};
    struct fixed_rec f;
    memset(&f, 0, sizeof(f));
    f.res_idx = res_idx;
    f.scope_idx = scope_idx;
    const unsigned char *tid = NULL, *sid = NULL, *pid = NULL, *ts = NULL, *name = NULL, *status = NULL;
    size_t tid_n = 0, sid_n = 0, pid_n = 0, ts_n = 0, name_n = 0, status_n = 0;
    int has_status = 0;
    int32_t attrs = 0;
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        uint64_t v;
        uint32_t v32;
        if (read_tag(&r, &field, &wt)) return UNSUPPORTED;
        switch (field) {
        case 1:
            if (wt != WT_LEN || read_len(&r, &tid, &tid_n)) return UNSUPPORTED;
            break;
        case 2:
            if (wt != WT_LEN || read_len(&r, &sid, &sid_n)) return UNSUPPORTED;
            break;
        case 3:
            if (wt != WT_LEN || read_len(&r, &ts, &ts_n)) return UNSUPPORTED;
            break;
        case 4:
            if (wt != WT_LEN || read_len(&r, &pid, &pid_n)) return UNSUPPORTED;
            break;
        case 5:
            if (wt != WT_LEN || read_len(&r, &name, &name_n)) return UNSUPPORTED;
            break;
        case 6:
            if (wt != WT_VARINT || read_varint(&r, &v)) return UNSUPPORTED;
            f.kind = (int32_t)(uint32_t)v;
            break;
        case 7:
            if (wt != WT_I64 || read_fixed64(&r, &f.start)) return UNSUPPORTED;
            break;
        case 8:
            if (wt != WT_I64 || read_fixed64(&r, &f.end)) return UNSUPPORTED;
            break;
        case 9: {
            const unsigned char *kv;
            size_t kv_n;
            if (wt != WT_LEN || read_len(&r, &kv, &kv_n) || kv_n > UINT32_MAX) return UNSUPPORTED;
            int32_t id = interner_id(&o->kvs, (const char *)kv, (uint32_t)kv_n);
            if (id < 0 || buf_i32(&o->attr_idx, id)) return oom();
            attrs++;
            break;
        }
        case 10:
            if (wt != WT_VARINT || read_varint(&r, &v)) return UNSUPPORTED;
            f.dropped_attrs = (uint32_t)v;
            break;
        case 12:
            if (wt != WT_VARINT || read_varint(&r, &v)) return UNSUPPORTED;
            f.dropped_events = (uint32_t)v;
            break;
        case 14:
            if (wt != WT_VARINT || read_varint(&r, &v)) return UNSUPPORTED;
            f.dropped_links = (uint32_t)v;
            break;
        case 15:
            if (has_status || wt != WT_LEN || read_len(&r, &status, &status_n)) return UNSUPPORTED;
            has_status = 1;
            break;
        case 16:
            if (wt != WT_I32 || read_fixed32(&r, &v32)) return UNSUPPORTED;
            f.flags = v32;
            break;
        case 11: /* events */
        case 13: /* links */
            return UNSUPPORTED;
        default:
            if (skip_field(&r, wt)) return UNSUPPORTED;
        }
    }
    if (tid_n != 16 || all_zero(tid, 16) || sid_n != 8 || all_zero(sid, 8)) return UNSUPPORTED;
    if (pid_n != 0 && pid_n != 8) return UNSUPPORTED;
    if (f.start > (uint64_t)INT64_MAX || f.end > (uint64_t)INT64_MAX) return UNSUPPORTED;
    if ((ts_n && !utf8_valid(ts, ts_n)) || (name_n && !utf8_valid(name, name_n))) return UNSUPPORTED;
    if (has_status) {
        int rc = decode_status(status, status_n, &f.status_code, &o->smsg);
        if (rc) return rc;
    } else if (strcol_add(&o->smsg, "", 0)) {
        return oom();
    }
    if (put_hex(&o->tid, tid, 16) || put_hex(&o->sid, sid, 8)) return oom();
    char hex[16];
    for (size_t i = 0; i < pid_n; i++) {
        hex[2 * i] = HEX[pid[i] >> 4];
        hex[2 * i + 1] = HEX[pid[i] & 15];
    }
    if (strcol_add(&o->pid, hex, 2 * pid_n) || strcol_add(&o->name, (const char *)name, name_n) ||
        strcol_add(&o->tstate, (const char *)ts, ts_n) || buf_i32(&o->attr_counts, attrs) ||
        buf_put(&o->fixed, &f, sizeof(f)))
        return oom();
    o->n++;
    return 0;
}

static int add_pair(buf_t *list, const unsigned char *msg, size_t msg_n, const unsigned char *url,
                    size_t url_n) {
    pair_t pair = {msg, url, msg_n, url_n};
    return buf_put(list, &pair, sizeof(pair)) ? NOMEM : 0;
}

/* Decodes a child (a ScopeSpans of a resource, or a Span of a scope); parent = the resource index
 * for a ScopeSpans' spans, own = the index of the container the child belongs to. */
typedef int (*child_fn)(const unsigned char *p, size_t n, int32_t parent, int32_t own, out_t *o);

/* ResourceSpans and ScopeSpans have the same shape: field 1 a singular message (Resource /
 * InstrumentationScope), field 2 the repeated children, field 3 schema_url. Records (message,
 * schema_url) in pairs (they may come after the children on the wire, hence two passes), then
 * decodes each child with its index. */
static int decode_container(const unsigned char *p, size_t n, buf_t *pairs, int32_t parent, child_fn child,
                            out_t *o) {
    reader_t r = {p, p + n};
    const unsigned char *msg = NULL, *url = NULL, *fp;
    size_t msg_n = 0, url_n = 0, fn;
    int has_msg = 0;
    while (r.p < r.end) { /* pass 1: validate the shape, find the message and schema_url */
        uint32_t field;
        int wt;
        if (read_tag(&r, &field, &wt)) return UNSUPPORTED;
        if (field == 1) {
            if (has_msg || wt != WT_LEN || read_len(&r, &msg, &msg_n)) return UNSUPPORTED;
            has_msg = 1;
        } else if (field == 3) {
            if (wt != WT_LEN || read_len(&r, &url, &url_n)) return UNSUPPORTED;
        } else if (field == 2) {
            if (wt != WT_LEN || read_len(&r, &fp, &fn)) return UNSUPPORTED;
        } else if (skip_field(&r, wt)) {
            return UNSUPPORTED;
        }
    }
    if (url_n && !utf8_valid(url, url_n)) return UNSUPPORTED;
    int32_t own = (int32_t)(pairs->len / sizeof(pair_t));
    if (add_pair(pairs, msg, msg_n, url, url_n)) return NOMEM;
    r.p = p;
    while (r.p < r.end) { /* pass 2: the children */
        uint32_t field;
        int wt;
        if (read_tag(&r, &field, &wt)) return UNSUPPORTED;
        if (field == 2) {
            if (read_len(&r, &fp, &fn)) return UNSUPPORTED;
            int rc = child(fp, fn, parent, own, o);
            if (rc) return rc;
        } else if (skip_field(&r, wt)) {
            return UNSUPPORTED;
        }
    }
    return 0;
}

static int span_child(const unsigned char *p, size_t n, int32_t res_idx, int32_t scope_idx, out_t *o) {
    return decode_span(p, n, res_idx, scope_idx, o);
}

static int scope_spans_child(const unsigned char *p, size_t n, int32_t unused, int32_t res_idx, out_t *o) {
    (void)unused;
    return decode_container(p, n, &o->scopes, res_idx, span_child, o);
}

static int decode_request(const unsigned char *p, size_t n, out_t *o) {
    reader_t r = {p, p + n};
    while (r.p < r.end) {
        uint32_t field;
        int wt;
        const unsigned char *fp;
        size_t fn;
        if (read_tag(&r, &field, &wt)) return UNSUPPORTED;
        if (field == 1) {
            if (wt != WT_LEN || read_len(&r, &fp, &fn)) return UNSUPPORTED;
            int rc = decode_container(fp, fn, &o->resources, -1, scope_spans_child, o);
            if (rc) return rc;
        } else if (skip_field(&r, wt)) {
            return UNSUPPORTED;
        }
    }
    return 0;
}

static PyObject *bytes_of(buf_t *b) { return PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len); }

static PyObject *strcol_tuple(strcol_t *c) {
    return Py_BuildValue("(NN)", bytes_of(&c->offsets), bytes_of(&c->data));
}

/* [(encoded message bytes, schema_url str), ...] of pair_t records. */
static PyObject *pair_list(buf_t *b) {
    size_t n = b->len / sizeof(pair_t);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    const pair_t *pairs = (const pair_t *)b->data;
    for (size_t i = 0; i < n; i++) {
        PyObject *item = Py_BuildValue("(y#s#)", pairs[i].msg ? (const char *)pairs[i].msg : "",
                                       (Py_ssize_t)pairs[i].msg_n,
                                       pairs[i].url ? (const char *)pairs[i].url : "", (Py_ssize_t)pairs[i].url_n);
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return list;
}

static PyObject *distinct_kvs(interner_t *t) {
    PyObject *list = PyList_New((Py_ssize_t)t->used);
    if (!list) return NULL;
    const char *rec = t->order.data;
    size_t step = sizeof(const char *) + sizeof(uint32_t);
    for (size_t i = 0; i < t->used; i++, rec += step) {
        const char *p;
        uint32_t n;
        memcpy(&p, rec, sizeof(p));
        memcpy(&n, rec + sizeof(p), sizeof(n));
        PyObject *b = PyBytes_FromStringAndSize(p, n);
        if (!b) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, b);
    }
    return list;
}

/* Identical attribute lists: for every span the id of its list of KeyValue ids (first-seen order),
 * and for every distinct list the first span that has it. Runs after decoding, when the index
 * buffer no longer moves. */
static int dedup_rows(out_t *o, buf_t *row_ids, buf_t *first_rows) {
    interner_t rows;
    if (interner_init(&rows)) return -1;
    const int32_t *counts = (const int32_t *)o->attr_counts.data;
    const char *idx = o->attr_idx.data;
    size_t at = 0;
    for (size_t i = 0; i < o->n; i++) {
        uint32_t bytes = (uint32_t)counts[i] * 4;
        size_t before = rows.used;
        int32_t id = interner_id(&rows, idx ? idx + at : "", bytes);
        if (id < 0 || buf_i32(row_ids, id) || (rows.used != before && buf_i32(first_rows, (int32_t)i))) {
            interner_free(&rows);
            return -1;
        }
        at += bytes;
    }
    interner_free(&rows);
    return 0;
}

static PyObject *otlpfast_decode(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE)) return NULL;
    out_t o;
    memset(&o, 0, sizeof(o));
    PyObject *result = NULL;
    buf_t row_ids = {0}, first_rows = {0};
    int rc;
    Py_BEGIN_ALLOW_THREADS /* pure C from here to the end of the block: the body stays pinned */
    rc = 0;
    if (strcol_init(&o.pid) || strcol_init(&o.name) || strcol_init(&o.tstate) || strcol_init(&o.smsg) ||
        interner_init(&o.kvs))
        rc = NOMEM;
    if (!rc) rc = decode_request((const unsigned char *)view.buf, (size_t)view.len, &o);
    if (!rc && dedup_rows(&o, &row_ids, &first_rows)) rc = NOMEM;
    Py_END_ALLOW_THREADS
    if (rc == UNSUPPORTED) {
        result = Py_None;
        Py_INCREF(result);
    } else if (rc == NOMEM) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("(nNNNNNNNNNNNNNN)", (Py_ssize_t)o.n, bytes_of(&o.fixed), bytes_of(&o.tid),
                               bytes_of(&o.sid), strcol_tuple(&o.pid), strcol_tuple(&o.name),
                               strcol_tuple(&o.tstate), strcol_tuple(&o.smsg), bytes_of(&o.attr_idx),
                               bytes_of(&o.attr_counts), distinct_kvs(&o.kvs), pair_list(&o.resources),
                               pair_list(&o.scopes), bytes_of(&row_ids), bytes_of(&first_rows));
    }
    free(row_ids.data);
    free(first_rows.data);
    free(o.resources.data);
    free(o.scopes.data);
    free(o.fixed.data);
    free(o.tid.data);
    free(o.sid.data);
    free(o.attr_idx.data);
    free(o.attr_counts.data);
    strcol_free(&o.pid);
    strcol_free(&o.name);
    strcol_free(&o.tstate);
    strcol_free(&o.smsg);
    interner_free(&o.kvs);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", otlpfast_decode, METH_O,
     "decode(body) -> tuple | None: the common shape of an OTLP ExportTraceServiceRequest as column "
     "buffers, or None when the body needs the full protobuf decoder (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_otlpfast",
                                    "Column decoder for the common shape of OTLP trace exports.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__otlpfast(void) {
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "_otlpfast supports little-endian hosts only");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "FIXED_RECORD", (long)sizeof(struct fixed_rec))) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
