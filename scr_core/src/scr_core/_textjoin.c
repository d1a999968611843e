/*
 * scr_core._textjoin: write a long text from templates in one pass.
 *
 * hostlist.expand_joined describes its text as a list of pieces: a str, copied
 * as it is, or a (values, cuts) pair of lists of str standing for
 * "".join(v.join(cuts) for v in values). In Python the pairs must first become
 * strings and then be joined again, so the text is written twice; at 1M names
 * that second copy and its page faults are half the time. join_pieces writes
 * each character once, into a str of the exact size. It only speeds things up:
 * hostlist has the same in Python and uses it when this module is not built,
 * and whenever join_pieces returns NotImplemented (a str that is not ASCII,
 * which names never are; only an odd separator can be: a text of mixed widths
 * is left to CPython's own join, which knows their rules).
 *
 * Python 3.9+, full C API (compact str objects), no state: safe to load in
 * several interpreters. Declared free of the GIL on free-threaded builds: it
 * reads its lists without locking them, so they must be the caller's own (as
 * hostlist's are), not shared with other threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* 1 if str `s` is ASCII (one byte per character, all below 128: the only
 * strings written here), 0 if not, -1 on error. */
static int
is_ascii(PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0) {
        return -1;
    }
#endif
    return PyUnicode_IS_ASCII(s) ? 1 : 0;
}

static int
add_size(Py_ssize_t *total, Py_ssize_t n)
{
    if (n > PY_SSIZE_T_MAX - *total) {
        PyErr_SetString(PyExc_OverflowError, "join_pieces: text too long");
        return -1;
    }
    *total += n;
    return 0;
}

/* The three measuring steps below return 1 if all they saw is ASCII, 0 if not
 * (join_pieces then returns NotImplemented), -1 on error. */

/* Adds the length of str `s` to *total. */
static int
measure_str(PyObject *s, const char *what, Py_ssize_t *total)
{
    if (!PyUnicode_CheckExact(s)) {
        PyErr_Format(PyExc_TypeError, "join_pieces: %s must be str, not %.100s", what,
                     Py_TYPE(s)->tp_name);
        return -1;
    }
    int ascii = is_ascii(s);
    if (ascii <= 0) {
        return ascii;
    }
    return add_size(total, PyUnicode_GET_LENGTH(s)) < 0 ? -1 : 1;
}

/* Adds the sum of the lengths of a list's str, `times` over, to *total. */
static int
measure_list(PyObject *list, const char *what, Py_ssize_t times, Py_ssize_t *total)
{
    Py_ssize_t sum = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        int ok = measure_str(PyList_GET_ITEM(list, i), what, &sum);
        if (ok <= 0) {
            return ok;
        }
    }
    if (times > 0 && sum > PY_SSIZE_T_MAX / times) {
        PyErr_SetString(PyExc_OverflowError, "join_pieces: text too long");
        return -1;
    }
    return add_size(total, sum * times) < 0 ? -1 : 1;
}

/* Adds the length of what a piece stands for to *total. */
static int
measure_piece(PyObject *p, Py_ssize_t *total)
{
    if (PyUnicode_CheckExact(p)) {
        return measure_str(p, "a piece", total);
    }
    if (!PyTuple_CheckExact(p) || PyTuple_GET_SIZE(p) != 2 ||
        !PyList_CheckExact(PyTuple_GET_ITEM(p, 0)) ||
        !PyList_CheckExact(PyTuple_GET_ITEM(p, 1))) {
        PyErr_Format(PyExc_TypeError,
                     "join_pieces: a piece must be a str or a (values, cuts) tuple of two "
                     "lists, not %.100s", Py_TYPE(p)->tp_name);
        return -1;
    }
    PyObject *values = PyTuple_GET_ITEM(p, 0), *cuts = PyTuple_GET_ITEM(p, 1);
    Py_ssize_t nv = PyList_GET_SIZE(values), nc = PyList_GET_SIZE(cuts);
    /* every value is written with all the cuts, and between two of them */
    int ok = measure_list(cuts, "a cut", nv, total);
    return ok <= 0 ? ok : measure_list(values, "a value", nc > 0 ? nc - 1 : 0, total);
}

/* Where the text goes, and how many of its first characters to leave out. */
typedef struct {
    Py_UCS1 *at;
    Py_ssize_t skip;
} Writer;

static inline void
put(Writer *w, PyObject *s)
{
    const Py_UCS1 *src = PyUnicode_1BYTE_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (w->skip > 0) {
        Py_ssize_t cut = n < w->skip ? n : w->skip;
        src += cut;
        n -= cut;
        w->skip -= cut;
    }
    memcpy(w->at, src, (size_t)n);
    w->at += n;
}

static void
put_joins(Writer *w, PyObject *values, PyObject *cuts)
{
    Py_ssize_t nv = PyList_GET_SIZE(values), nc = PyList_GET_SIZE(cuts);
    PyObject **v = PySequence_Fast_ITEMS(values);
    PyObject **c = PySequence_Fast_ITEMS(cuts);
    for (Py_ssize_t i = 0; i < nv; i++) {
        if (nc == 0) {
            continue;
        }
        put(w, c[0]);
        for (Py_ssize_t j = 1; j < nc; j++) {
            put(w, v[i]);
            put(w, c[j]);
        }
    }
}

PyDoc_STRVAR(join_pieces_doc,
"join_pieces(pieces, skip=0, /) -> str\n"
"\n"
"The concatenation of ``pieces`` without its first ``skip`` characters. Each piece\n"
"is a str, or a tuple (values, cuts) of two lists of str standing for\n"
"\"\".join(v.join(cuts) for v in values). Returns NotImplemented if a str is not\n"
"ASCII (the caller then joins in Python). The lists must not change meanwhile.");

static PyObject *
join_pieces(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *pieces;
    Py_ssize_t skip = 0;
    if (!PyArg_ParseTuple(args, "O!|n:join_pieces", &PyList_Type, &pieces, &skip)) {
        return NULL;
    }
    if (skip < 0) {
        PyErr_SetString(PyExc_ValueError, "join_pieces: skip must not be negative");
        return NULL;
    }
    Py_ssize_t total = 0;
    Py_ssize_t np = PyList_GET_SIZE(pieces);
    for (Py_ssize_t i = 0; i < np; i++) {
        int ok = measure_piece(PyList_GET_ITEM(pieces, i), &total);
        if (ok < 0) {
            return NULL;
        }
        if (ok == 0) {
            Py_RETURN_NOTIMPLEMENTED;
        }
    }
    Py_ssize_t size = total > skip ? total - skip : 0;
    PyObject *text = PyUnicode_New(size, 127);
    if (text == NULL) {
        return NULL;
    }
    Writer w = {PyUnicode_1BYTE_DATA(text), skip};
    for (Py_ssize_t i = 0; i < np; i++) {
        PyObject *p = PyList_GET_ITEM(pieces, i);
        if (PyUnicode_CheckExact(p)) {
            put(&w, p);
        }
        else {
            put_joins(&w, PyTuple_GET_ITEM(p, 0), PyTuple_GET_ITEM(p, 1));
        }
    }
    /* the lists cannot have changed: nothing above runs Python code */
    assert(w.at == PyUnicode_1BYTE_DATA(text) + size);
    return text;
}

static PyMethodDef textjoin_methods[] = {
    {"join_pieces", join_pieces, METH_VARARGS, join_pieces_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot textjoin_slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef textjoin_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "scr_core._textjoin",
    .m_doc = "Write a long text from templates in one pass (see hostlist.expand_joined).",
    .m_size = 0,
    .m_methods = textjoin_methods,
    .m_slots = textjoin_slots,
};

PyMODINIT_FUNC
PyInit__textjoin(void)
{
    return PyModuleDef_Init(&textjoin_module);
}
