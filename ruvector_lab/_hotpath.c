/* The facade's per-query hot path in C (issue 20): the query check and the making of a search's results.
 *
 * A graph search over 10,000 vectors takes 20-100 us; in Python the facade's own work around it (proving the
 * query finite, reading the library's result arrays, mapping labels to string ids, building the results)
 * took 4-6 us of it with cold caches. These two functions do that work in a few hundred nanoseconds. Both
 * only ever answer "yes, here it is" or "not this case" (False / None): every error message, every unusual
 * input and every unusual result stays in Python (ruvector_lab.index and ruvector_lab.fastpath), which this
 * module mirrors and which runs whenever this module was not built.
 *
 * Score conversions (must match ruvector_lab.fastpath.convert_scores):
 *   0 same, 1 sqrt (negative rounding clamped to 0), 2 d - 1, 3 1 - d, 4 -d
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

enum { SCORE_SAME = 0, SCORE_SQRT = 1, SCORE_MINUS_ONE = 2, SCORE_ONE_MINUS = 3, SCORE_NEGATE = 4, SCORE_MODES,
       ROW_PAIRS = SCORE_MODES };

static PyObject *str_ids;
static PyObject *str_scores;

/* query_ok(query, dimensions, cosine) -> bool
 * True when query is exactly a numpy.ndarray of float32, 1-D, of this length, aligned and contiguous, every
 * component finite and, under cosine, the vector not zero. False sends the caller to the general checks. */
static PyObject *query_ok(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "query_ok(query, dimensions, cosine) takes 3 arguments");
        return NULL;
    }
    PyObject *query = args[0];
    Py_ssize_t dimensions = PyLong_AsSsize_t(args[1]);
    if (dimensions == -1 && PyErr_Occurred()) return NULL;
    int cosine = PyObject_IsTrue(args[2]);
    if (cosine < 0) return NULL;
    if (!PyArray_CheckExact(query)) Py_RETURN_FALSE;
    PyArrayObject *array = (PyArrayObject *)query;
    if (PyArray_TYPE(array) != NPY_FLOAT32 || PyArray_NDIM(array) != 1 || PyArray_DIM(array, 0) != dimensions ||
        !PyArray_ISALIGNED(array) || PyArray_STRIDE(array, 0) != (npy_intp)sizeof(float) ||
        !PyArray_ISNOTSWAPPED(array))
        Py_RETURN_FALSE;
    const float *values = (const float *)PyArray_DATA(array);
    /* a sum of squares is NaN or inf if any term is; in double, no finite float32 row overflows it */
    double squared = 0.0;
    for (Py_ssize_t i = 0; i < dimensions; i++) squared += (double)values[i] * (double)values[i];
    if (!isfinite(squared)) Py_RETURN_FALSE;
    if (cosine && !(squared > (double)FLT_MIN)) Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

static int read_label(PyArrayObject *labels, npy_intp i, long long *out) {
    const char *at = (const char *)PyArray_DATA(labels) + i * PyArray_STRIDE(labels, PyArray_NDIM(labels) - 1);
    switch (PyArray_TYPE(labels)) {
        case NPY_INT64: *out = (long long)*(const int64_t *)at; return 1;
        case NPY_UINT64: {
            uint64_t v = *(const uint64_t *)at;
            if (v > (uint64_t)INT64_MAX) return 0;
            *out = (long long)v;
            return 1;
        }
        case NPY_INT32: *out = (long long)*(const int32_t *)at; return 1;
        case NPY_UINT32: *out = (long long)*(const uint32_t *)at; return 1;
        default: return 0;
    }
}

static int read_distance(PyArrayObject *distances, npy_intp i, double *out) {
    const char *at = (const char *)PyArray_DATA(distances) +
                     i * PyArray_STRIDE(distances, PyArray_NDIM(distances) - 1);
    switch (PyArray_TYPE(distances)) {
        case NPY_FLOAT32: *out = (double)*(const float *)at; return 1;
        case NPY_FLOAT64: *out = *(const double *)at; return 1;
        default: return 0;
    }
}

static double convert(double d, int mode) {
    switch (mode) {
        case SCORE_SQRT: return d > 0.0 ? sqrt(d) : 0.0;
        case SCORE_MINUS_ONE: return d - 1.0;
        case SCORE_ONE_MINUS: return 1.0 - d;
        case SCORE_NEGATE: return -d;
        default: return d;
    }
}

/* a result row: a 1-D array, or a 2-D array of one row, aligned, native byte order */
static int row_of(PyObject *object, npy_intp *length) {
    if (!PyArray_Check(object)) return 0;
    PyArrayObject *array = (PyArrayObject *)object;
    int ndim = PyArray_NDIM(array);
    if (!(ndim == 1 || (ndim == 2 && PyArray_DIM(array, 0) == 1))) return 0;
    if (!PyArray_ISALIGNED(array) || !PyArray_ISNOTSWAPPED(array)) return 0;
    *length = PyArray_DIM(array, ndim - 1);
    return 1;
}

/* a hits_type made without its __init__, holding ids and scores; steals both references */
static PyObject *make_hits(PyTypeObject *hits_type, PyObject *found, PyObject *scores) {
    PyObject *result = hits_type->tp_alloc(hits_type, 0);
    if (result == NULL || PyObject_SetAttr(result, str_ids, found) < 0 ||
        PyObject_SetAttr(result, str_scores, scores) < 0) {
        Py_XDECREF(result);
        result = NULL;
    }
    Py_DECREF(found);
    Py_DECREF(scores);
    return result;
}

/* a label that ruvector returns as its decimal string ("0" .. "999999999999999999") */
static int parse_label(PyObject *text, long long *out) {
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) return 0;
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length < 1 || length > 18) return 0;
    const Py_UCS1 *digits = PyUnicode_1BYTE_DATA(text);
    long long value = 0;
    for (Py_ssize_t i = 0; i < length; i++) {
        if (digits[i] < '0' || digits[i] > '9') return 0;
        value = value * 10 + (digits[i] - '0');
    }
    *out = value;
    return 1;
}

/* one (label string, score, ...) tuple of ruvector's results: 1 when it is one */
static int read_pair(PyObject *item, long long *label, double *score) {
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) < 2) return 0;
    if (!parse_label(PyTuple_GET_ITEM(item, 0), label)) return 0;
    PyObject *value = PyTuple_GET_ITEM(item, 1);
    if (!PyFloat_CheckExact(value)) return 0;
    *score = PyFloat_AS_DOUBLE(value);
    return 1;
}

/* hit i of a result row, whatever its form: 1 read, 0 not this case */
typedef int (*hit_reader)(const void *row, Py_ssize_t i, long long *label, double *score);

typedef struct {
    PyArrayObject *distances, *labels;
    int mode;
} array_row;

static int read_array_hit(const void *row, Py_ssize_t i, long long *label, double *score) {
    const array_row *arrays = (const array_row *)row;
    if (!read_label(arrays->labels, i, label) || !read_distance(arrays->distances, i, score)) return 0;
    *score = convert(*score, arrays->mode);
    return 1;
}

static int read_pair_hit(const void *row, Py_ssize_t i, long long *label, double *score) {
    return read_pair(PyList_GET_ITEM((PyObject *)row, i), label, score);
}

/* the n hits of a row as hits_type: each label mapped to its id through the facade's label -> id list; None when
 * a hit is not readable, its label negative (padding) or beyond the list, or its id None (removed) */
static PyObject *build_hits(PyObject *type, PyObject *ids, Py_ssize_t n, hit_reader read, const void *row) {
    Py_ssize_t known = PyList_GET_SIZE(ids);
    PyObject *found = PyTuple_New(n);
    if (found == NULL) return NULL;
    PyObject *scores = PyList_New(n);
    if (scores == NULL) {
        Py_DECREF(found);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long long label;
        double score;
        if (!read(row, i, &label, &score) || label < 0 || label >= known) goto not_this_case;
        PyObject *id = PyList_GET_ITEM(ids, (Py_ssize_t)label);
        if (id == Py_None) goto not_this_case;
        Py_INCREF(id);
        PyTuple_SET_ITEM(found, i, id);
        PyObject *value = PyFloat_FromDouble(score);
        if (value == NULL) {
            Py_DECREF(found);
            Py_DECREF(scores);
            return NULL;
        }
        PyList_SET_ITEM(scores, i, value);
    }
    return make_hits((PyTypeObject *)type, found, scores);

not_this_case:
    /* unset tuple and list slots are NULL, which their deallocation skips */
    Py_DECREF(found);
    Py_DECREF(scores);
    Py_RETURN_NONE;
}

/* hits(hits_type, distances, labels, ids, mode) -> hits_type | None
 * The results of one query from the library's own result row, as hits_type (SearchHits: its ids a tuple, its
 * scores a list of floats) made without calling its __init__: labels (an int64/uint64/int32/uint32 array) mapped
 * to their string ids through the facade's label -> id list, distances (a float32/float64 array) converted to the
 * facade's scores by mode. With mode ROW_PAIRS, distances is instead a list of (decimal label string, score, ...)
 * tuples, ruvector's own results, and labels is k: the first k count, their scores kept as they are. None, for
 * the caller's general path, when a row is not of that form, holds padding (a negative label), a label beyond the
 * list, or a label whose id is None (removed). */
static PyObject *hits(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "hits(hits_type, distances, labels, ids, mode) takes 5 arguments");
        return NULL;
    }
    PyObject *type = args[0], *ids = args[3];
    if (!PyType_Check(type) || !PyList_CheckExact(ids)) {
        PyErr_SetString(PyExc_TypeError, "hits() needs a type and the facade's id list");
        return NULL;
    }
    long mode = PyLong_AsLong(args[4]);
    if (mode == -1 && PyErr_Occurred()) return NULL;
    if (mode == ROW_PAIRS) {
        Py_ssize_t k = PyLong_AsSsize_t(args[2]);
        if (k == -1 && PyErr_Occurred()) return NULL;
        PyObject *results = args[1];
        if (!PyList_CheckExact(results) || k < 1) Py_RETURN_NONE;
        Py_ssize_t n = PyList_GET_SIZE(results);
        return build_hits(type, ids, k < n ? k : n, read_pair_hit, results);
    }
    if (mode < 0 || mode > ROW_PAIRS) {
        PyErr_Format(PyExc_ValueError, "unknown score conversion %ld", mode);
        return NULL;
    }
    npy_intp n_distances, n_labels;
    if (!row_of(args[1], &n_distances) || !row_of(args[2], &n_labels) || n_distances != n_labels) Py_RETURN_NONE;
    array_row row = {(PyArrayObject *)args[1], (PyArrayObject *)args[2], (int)mode};
    return build_hits(type, ids, (Py_ssize_t)n_labels, read_array_hit, &row);
}

/* pairs_rows(results_rows, k) -> (scores float32 (m, k), labels int64 (m, k)) | None
 * ruvector's per-query result lists for a batch, every row holding at least k (label string, score, ...)
 * tuples, as the backend protocol's two arrays (first k of each row). None when a row is short or a tuple is
 * not of that shape (the caller's general path pads and parses). */
static PyObject *pairs_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "pairs_rows(results_rows, k) takes 2 arguments");
        return NULL;
    }
    PyObject *rows = args[0];
    Py_ssize_t k = PyLong_AsSsize_t(args[1]);
    if (k == -1 && PyErr_Occurred()) return NULL;
    if (!PyList_CheckExact(rows) || k < 1) Py_RETURN_NONE;
    Py_ssize_t m = PyList_GET_SIZE(rows);
    for (Py_ssize_t r = 0; r < m; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyList_CheckExact(row) || PyList_GET_SIZE(row) < k) Py_RETURN_NONE;
    }
    npy_intp dims[2] = {m, k};
    PyArrayObject *scores = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (scores == NULL) return NULL;
    PyArrayObject *labels = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT64);
    if (labels == NULL) {
        Py_DECREF(scores);
        return NULL;
    }
    float *score_out = (float *)PyArray_DATA(scores);
    int64_t *label_out = (int64_t *)PyArray_DATA(labels);
    for (Py_ssize_t r = 0; r < m; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        for (Py_ssize_t i = 0; i < k; i++) {
            long long label;
            double score;
            if (!read_pair(PyList_GET_ITEM(row, i), &label, &score)) {
                Py_DECREF(scores);
                Py_DECREF(labels);
                Py_RETURN_NONE;
            }
            score_out[r * k + i] = (float)score;
            label_out[r * k + i] = (int64_t)label;
        }
    }
    return Py_BuildValue("(NN)", scores, labels);
}

static PyMethodDef methods[] = {
    {"query_ok", (PyCFunction)(void (*)(void))query_ok, METH_FASTCALL,
     "query_ok(query, dimensions, cosine) -> bool: an exact float32 1-D ndarray of this length, finite, and "
     "non-zero under cosine"},
    {"hits", (PyCFunction)(void (*)(void))hits, METH_FASTCALL,
     "hits(hits_type, distances, labels, ids, mode) -> hits_type or None: one query's results from the "
     "library's result row"},
    {"pairs_rows", (PyCFunction)(void (*)(void))pairs_rows, METH_FASTCALL,
     "pairs_rows(results_rows, k) -> (scores, labels) arrays or None: a batch of ruvector's result lists"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_hotpath", "The facade's per-query hot path in C (see ruvector_lab.fastpath).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__hotpath(void) {
    import_array();
    str_ids = PyUnicode_InternFromString("ids");
    str_scores = PyUnicode_InternFromString("scores");
    if (str_ids == NULL || str_scores == NULL) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddIntConstant(m, "SCORE_SAME", SCORE_SAME) < 0 ||
        PyModule_AddIntConstant(m, "SCORE_SQRT", SCORE_SQRT) < 0 ||
        PyModule_AddIntConstant(m, "SCORE_MINUS_ONE", SCORE_MINUS_ONE) < 0 ||
        PyModule_AddIntConstant(m, "SCORE_ONE_MINUS", SCORE_ONE_MINUS) < 0 ||
        PyModule_AddIntConstant(m, "SCORE_NEGATE", SCORE_NEGATE) < 0 ||
        PyModule_AddIntConstant(m, "ROW_PAIRS", ROW_PAIRS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
