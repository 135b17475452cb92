/* Binned max over sets of feature cells, on the CPU: the kernel of jtsm.ops.binned_max.

   The same operation as the pure-torch path of binned_max.py, in one pass with no gathered
   copies: bin b of the output is the channel-wise max over the rows cells[starts[b] ..
   starts[b+1]) of a (n_cells, C) float32 table, times scale[b]; an empty bin is 0.
   Backward sends each output gradient (times scale[b]) to the first cell of the bin, in the
   bin's cell order, that holds the max: RoIPool's argmax routing. Bins are visited in order
   and so are their cells, so the sums are deterministic.

   Both functions take buffers (numpy views of contiguous CPU tensors) and write into the
   output buffer they are given; binned_max.py checks shapes, dtypes and NaN-free tables
   before calling (a NaN makes the torch path's max NaN; this kernel is not asked then).

   forward(table, C, starts, cells, scale_or_None, out)
   backward(table, C, starts, cells, scale_or_None, grad_out, grad_table, scratch)
     grad_table is accumulated into (pass zeros); scratch is a buffer of >= 8 * C bytes.
   Cell ids must be below 2**31 (binned_max.py checks).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    Py_buffer table, starts, cells, scale, a, b, c;
    int have_scale;
} Bufs;

static void release(Bufs *x) {
    Py_buffer *all[] = {&x->table, &x->starts, &x->cells, &x->scale, &x->a, &x->b, &x->c};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); ++i)
        if (all[i]->obj != NULL) PyBuffer_Release(all[i]);
}

static int get(PyObject *o, Py_buffer *view, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(o, view, flags) < 0) {
        PyErr_Format(PyExc_TypeError, "_binnedmax: %s must be a contiguous%s buffer", name,
                     writable ? " writable" : "");
        return -1;
    }
    return 0;
}

static int check_plan(const Bufs *x, Py_ssize_t C, Py_ssize_t *n_bins) {
    Py_ssize_t nb = x->starts.len / (Py_ssize_t)sizeof(int64_t) - 1;
    Py_ssize_t ne = x->cells.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t n_cells = x->table.len / (Py_ssize_t)sizeof(float) / (C > 0 ? C : 1);
    const int64_t *st = (const int64_t *)x->starts.buf;
    const int64_t *cl = (const int64_t *)x->cells.buf;
    if (C <= 0 || nb < 0 || n_cells >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "_binnedmax: bad channel count or starts");
        return -1;
    }
    if (st[0] != 0 || st[nb] != ne) {
        PyErr_SetString(PyExc_ValueError, "_binnedmax: starts do not span the cells");
        return -1;
    }
    for (Py_ssize_t b = 0; b < nb; ++b)
        if (st[b + 1] < st[b]) {
            PyErr_SetString(PyExc_ValueError, "_binnedmax: starts must not decrease");
            return -1;
        }
    for (Py_ssize_t e = 0; e < ne; ++e)
        if (cl[e] < 0 || cl[e] >= n_cells) {
            PyErr_SetString(PyExc_IndexError, "_binnedmax: cell index out of range");
            return -1;
        }
    if (x->have_scale && x->scale.len / (Py_ssize_t)sizeof(float) < nb) {
        PyErr_SetString(PyExc_ValueError, "_binnedmax: scale is shorter than the bins");
        return -1;
    }
    *n_bins = nb;
    return 0;
}

static PyObject *forward(PyObject *self, PyObject *args) {
    PyObject *t, *s, *c, *sc, *o;
    Py_ssize_t C;
    Bufs x;
    memset(&x, 0, sizeof x);
    if (!PyArg_ParseTuple(args, "OnOOOO", &t, &C, &s, &c, &sc, &o)) return NULL;
    x.have_scale = sc != Py_None;
    if (get(t, &x.table, 0, "table") || get(s, &x.starts, 0, "starts") ||
        get(c, &x.cells, 0, "cells") || (x.have_scale && get(sc, &x.scale, 0, "scale")) ||
        get(o, &x.a, 1, "out")) {
        release(&x);
        return NULL;
    }
    Py_ssize_t nb;
    if (check_plan(&x, C, &nb) < 0) goto fail;
    if (x.a.len < nb * C * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "_binnedmax: out is too small");
        goto fail;
    }
    {
        const float *tab = (const float *)x.table.buf;
        const int64_t *st = (const int64_t *)x.starts.buf;
        const int64_t *cl = (const int64_t *)x.cells.buf;
        const float *scale = x.have_scale ? (const float *)x.scale.buf : NULL;
        float *out = (float *)x.a.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t b = 0; b < nb; ++b) {
            float *restrict ob = out + b * C;
            int64_t e0 = st[b], e1 = st[b + 1];
            if (e0 == e1) {
                memset(ob, 0, (size_t)C * sizeof(float));
                continue;
            }
            memcpy(ob, tab + cl[e0] * C, (size_t)C * sizeof(float));
            for (int64_t e = e0 + 1; e < e1; ++e) {
                const float *restrict row = tab + cl[e] * C;
                for (Py_ssize_t k = 0; k < C; ++k) ob[k] = row[k] > ob[k] ? row[k] : ob[k];
            }
            if (scale != NULL) {
                float f = scale[b];
                for (Py_ssize_t k = 0; k < C; ++k) ob[k] *= f;
            }
        }
        Py_END_ALLOW_THREADS
    }
    release(&x);
    Py_RETURN_NONE;
fail:
    release(&x);
    return NULL;
}

static PyObject *backward(PyObject *self, PyObject *args) {
    PyObject *t, *s, *c, *sc, *go, *gt, *scr;
    Py_ssize_t C;
    Bufs x;
    memset(&x, 0, sizeof x);
    if (!PyArg_ParseTuple(args, "OnOOOOOO", &t, &C, &s, &c, &sc, &go, &gt, &scr)) return NULL;
    x.have_scale = sc != Py_None;
    if (get(t, &x.table, 0, "table") || get(s, &x.starts, 0, "starts") ||
        get(c, &x.cells, 0, "cells") || (x.have_scale && get(sc, &x.scale, 0, "scale")) ||
        get(go, &x.a, 0, "grad_out") || get(gt, &x.b, 1, "grad_table") ||
        get(scr, &x.c, 1, "scratch")) {
        release(&x);
        return NULL;
    }
    Py_ssize_t nb;
    if (check_plan(&x, C, &nb) < 0) goto fail;
    if (x.a.len < nb * C * (Py_ssize_t)sizeof(float) || x.b.len != x.table.len ||
        x.c.len < C * (Py_ssize_t)(sizeof(int32_t) + sizeof(float))) {
        PyErr_SetString(PyExc_ValueError, "_binnedmax: grad_out, grad_table or scratch size");
        goto fail;
    }
    {
        const float *tab = (const float *)x.table.buf;
        const int64_t *st = (const int64_t *)x.starts.buf;
        const int64_t *cl = (const int64_t *)x.cells.buf;
        const float *scale = x.have_scale ? (const float *)x.scale.buf : NULL;
        const float *gout = (const float *)x.a.buf;
        float *grad = (float *)x.b.buf;
        int32_t *restrict arg = (int32_t *)x.c.buf;   /* C argmax cells */
        float *restrict best = (float *)(arg + C);    /* C running maxima */
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t b = 0; b < nb; ++b) {
            int64_t e0 = st[b], e1 = st[b + 1];
            if (e0 == e1) continue;
            const float *restrict gb = gout + b * C;
            float f = scale != NULL ? scale[b] : 1.0f;
            int64_t c0 = cl[e0];
            if (e1 - e0 == 1) {  /* one cell: the whole gradient goes to it */
                float *restrict g = grad + c0 * C;
                for (Py_ssize_t k = 0; k < C; ++k) g[k] += gb[k] * f;
                continue;
            }
            memcpy(best, tab + c0 * C, (size_t)C * sizeof(float));
            for (Py_ssize_t k = 0; k < C; ++k) arg[k] = (int32_t)c0;
            for (int64_t e = e0 + 1; e < e1; ++e) {
                const float *restrict row = tab + cl[e] * C;
                int32_t ce = (int32_t)cl[e];
                for (Py_ssize_t k = 0; k < C; ++k) {
                    int32_t gt_ = -(int32_t)(row[k] > best[k]);  /* strict: the first max wins */
                    best[k] = row[k] > best[k] ? row[k] : best[k];
                    arg[k] = (ce & gt_) | (arg[k] & ~gt_);
                }
            }
            for (Py_ssize_t k = 0; k < C; ++k) grad[(int64_t)arg[k] * C + k] += gb[k] * f;
        }
        Py_END_ALLOW_THREADS
    }
    release(&x);
    Py_RETURN_NONE;
fail:
    release(&x);
    return NULL;
}

static PyMethodDef methods[] = {
    {"forward", forward, METH_VARARGS, "Binned max forward (see the module comment)."},
    {"backward", backward, METH_VARARGS, "Binned max backward with argmax routing."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_binnedmax",
                                    "CPU kernel of jtsm.ops.binned_max", -1, methods};

PyMODINIT_FUNC PyInit__binnedmax(void) { return PyModule_Create(&module); }
