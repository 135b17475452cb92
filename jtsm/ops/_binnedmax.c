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

   moi_plan(...) builds MoIPool's plan (the bins' cells, Eq. 5-6) in one pass, see below.

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

/* Release the buffers; None on success, NULL (the error set) on failure. */
static PyObject *finish(Bufs *x, int ok) {
    release(x);
    if (!ok) return NULL;
    Py_RETURN_NONE;
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

typedef struct {
    const float *tab;    /* (n_cells, C) table */
    const int64_t *st;   /* (n_bins + 1,) starts */
    const int64_t *cl;   /* (E,) cells */
    const float *scale;  /* (n_bins,) or NULL */
} Plan;

static Plan plan_of(const Bufs *x) {
    Plan p = {(const float *)x->table.buf, (const int64_t *)x->starts.buf,
              (const int64_t *)x->cells.buf, x->have_scale ? (const float *)x->scale.buf : NULL};
    return p;
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
        const Plan pl = plan_of(&x);
        const float *tab = pl.tab, *scale = pl.scale;
        const int64_t *st = pl.st, *cl = pl.cl;
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
    return finish(&x, 1);
fail:
    return finish(&x, 0);
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
        const Plan pl = plan_of(&x);
        const float *tab = pl.tab, *scale = pl.scale;
        const int64_t *st = pl.st, *cl = pl.cl;
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
    return finish(&x, 1);
fail:
    return finish(&x, 0);
}

/* moi_plan(crow, col, inc_crow, inc_cells, lo_r, hi_r, lo_c, hi_c, ph, pw, wf, n_cells,
            starts_out, cells_out, nonempty_out, stamp) -> number of cells written

   MoIPool's plan (moi_pool.py builds the same in torch): proposal p is on a cell when one of
   its superpixels col[crow[p]:crow[p+1]] touches it (the incidence CSR inc_crow / inc_cells,
   Eq. 6); bin (u, v) of p holds the on-cells of rows lo_r[p,u]..hi_r[p,u]-1 and columns
   lo_c[p,v]..hi_c[p,v]-1, row-major (Eq. 5). All int64 buffers; stamp is an int64 scratch of
   n_cells items; cells_out must hold the sum of all bins' rectangle areas. */
static PyObject *moi_plan(PyObject *self, PyObject *args) {
    PyObject *o[15];
    Py_ssize_t ph, pw, wf, n_cells;
    if (!PyArg_ParseTuple(args, "OOOOOOOOnnnnOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &o[6], &o[7], &ph, &pw, &wf, &n_cells, &o[8], &o[9], &o[10], &o[11]))
        return NULL;
    Py_buffer v[12];
    static const char *names[12] = {"crow", "col", "inc_crow", "inc_cells", "lo_r", "hi_r",
                                    "lo_c", "hi_c", "starts_out", "cells_out", "nonempty_out",
                                    "stamp"};
    int got = 0;
    PyObject *result = NULL;
    for (; got < 12; ++got)
        if (get(o[got], &v[got], got >= 8, names[got]) < 0) goto done;
    {
        const int64_t *crow = v[0].buf, *col = v[1].buf, *ic = v[2].buf, *icell = v[3].buf;
        const int64_t *lr = v[4].buf, *hr = v[5].buf, *lc = v[6].buf, *hc = v[7].buf;
        int64_t *starts = v[8].buf, *cells = v[9].buf, *nonempty = v[10].buf, *stamp = v[11].buf;
        Py_ssize_t np_ = v[0].len / 8 - 1, n_sp = v[2].len / 8 - 1;
        Py_ssize_t nnz = v[1].len / 8, n_inc = v[3].len / 8, cap = v[9].len / 8;
        if (np_ < 0 || n_sp < 0 || ph <= 0 || pw <= 0 || wf <= 0 || n_cells < 0 ||
            v[4].len / 8 != np_ * ph || v[5].len / 8 != np_ * ph || v[6].len / 8 != np_ * pw ||
            v[7].len / 8 != np_ * pw || v[8].len / 8 != np_ * ph * pw + 1 ||
            v[10].len / 8 != np_ || v[11].len / 8 < n_cells || crow[0] != 0 ||
            crow[np_] > nnz || ic[0] != 0 || ic[n_sp] > n_inc) {
            PyErr_SetString(PyExc_ValueError, "_binnedmax.moi_plan: inconsistent sizes");
            goto done;
        }
        for (Py_ssize_t i = 0; i < n_cells; ++i) stamp[i] = -1;
        int64_t e = 0;
        starts[0] = 0;
        for (Py_ssize_t p = 0; p < np_; ++p) {
            for (int64_t k = crow[p]; k < crow[p + 1]; ++k) {
                int64_t sp = col[k];
                if (sp < 0 || sp >= n_sp) {
                    PyErr_SetString(PyExc_IndexError, "_binnedmax.moi_plan: superpixel id");
                    goto done;
                }
                for (int64_t j = ic[sp]; j < ic[sp + 1]; ++j) {
                    int64_t cell = icell[j];
                    if (cell < 0 || cell >= n_cells) {
                        PyErr_SetString(PyExc_IndexError, "_binnedmax.moi_plan: cell id");
                        goto done;
                    }
                    stamp[cell] = p;
                }
            }
            int64_t filled = 0;
            for (Py_ssize_t u = 0; u < ph; ++u) {
                int64_t r0 = lr[p * ph + u], r1 = hr[p * ph + u];
                for (Py_ssize_t w = 0; w < pw; ++w) {
                    int64_t c0 = lc[p * pw + w], c1 = hc[p * pw + w], e0 = e;
                    for (int64_t r = r0; r < r1; ++r)
                        for (int64_t c = c0; c < c1; ++c) {
                            int64_t cell = r * wf + c;
                            if (cell < 0 || cell >= n_cells || stamp[cell] != p) continue;
                            if (e >= cap) {
                                PyErr_SetString(PyExc_ValueError,
                                                "_binnedmax.moi_plan: cells_out too small");
                                goto done;
                            }
                            cells[e++] = cell;
                        }
                    filled += e > e0;
                    starts[(p * ph + u) * pw + w + 1] = e;
                }
            }
            nonempty[p] = filled;
        }
        result = PyLong_FromLongLong(e);
    }
done:
    for (int i = 0; i < got; ++i) PyBuffer_Release(&v[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"moi_plan", moi_plan, METH_VARARGS, "MoIPool's bins and their on-cells (CSR)."},
    {"forward", forward, METH_VARARGS, "Binned max forward (see the module comment)."},
    {"backward", backward, METH_VARARGS, "Binned max backward with argmax routing."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_binnedmax",
                                    "CPU kernel of jtsm.ops.binned_max", -1, methods};

PyMODINIT_FUNC PyInit__binnedmax(void) { return PyModule_Create(&module); }
