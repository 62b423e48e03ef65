"""Python access to ensembles trained by ens, through libens (ctypes, numpy).

    import ens
    model = ens.load("result.h5")
    out = model.predict(x)          # x: (n, features) raw rows, any float dtype
    out["probs"], out["pred"]       # classification (also "uncertainty")
    out["mean"], out["var"]         # regression (also "var_aleatoric", "var_epistemic")

The library is found through $ENS_LIB (a path to libens.so), next to this
file (an installed tree: <prefix>/lib, or the build folder of a source tree),
then the system's library path. Errors of libens raise ens.Error (a subclass
per kind) carrying ens's message; no compiled extension is needed. Calls
release the GIL, and each thread predicts through its own workspace, so one
Model may be used from several threads.
"""
import ctypes
import ctypes.util
import os
import threading

import numpy as np

__all__ = ["load", "Model", "Error", "FormatError", "InputError", "RULES"]

RULES = ("average", "vote", "params", "select")
_CODES = {-1: "ENOMEM", -2: "EINVAL", -3: "EIO", -4: "EFORMAT", -6: "ESHAPE"}


class Error(Exception):
    """An error reported by libens; .code is the ENS_E* code (negative)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class FormatError(Error, OSError):
    """The file is not a readable ens result (ENS_EIO, ENS_EFORMAT)."""


class InputError(Error, ValueError):
    """Rows or options the model cannot take (ENS_ESHAPE, ENS_EINVAL)."""


def _error(code, message):
    if code in (-3, -4):
        return FormatError(code, message)
    if code in (-2, -6):
        return InputError(code, message)
    return Error(code, message)


def _find_library():
    env = os.environ.get("ENS_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    # Beside it, an installed tree (<prefix>/share/ens/python), a source tree.
    for rel in ("libens.so", "../../../lib/libens.so", "../lib/libens.so", "../build/libens.so"):
        p = os.path.normpath(os.path.join(here, rel))
        if os.path.exists(p):
            return p
    found = ctypes.util.find_library("ens")
    if found:
        return found
    raise OSError("libens not found: set ENS_LIB to the path of libens.so "
                  "(cmake --build puts it in the build folder)")


_lib = None
_lock = threading.Lock()


def _library():
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        lib = ctypes.CDLL(_find_library())
        P, I, D = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
        sigs = {
            "ens_infer_open": (I, [ctypes.POINTER(P), ctypes.c_char_p]),
            "ens_infer_close": (None, [P]),
            "ens_infer_errmsg": (ctypes.c_char_p, []),
            "ens_infer_version": (ctypes.c_char_p, []),
            "ens_infer_task": (I, [P]),
            "ens_infer_inputs": (I, [P]),
            "ens_infer_input_shape": (I, [P, ctypes.POINTER(I), I]),
            "ens_infer_classes": (I, [P]),
            "ens_infer_targets": (I, [P]),
            "ens_infer_members": (I, [P]),
            "ens_infer_members_total": (I, [P]),
            "ens_infer_rules": (I, [P]),
            "ens_infer_default_rule": (I, [P]),
            "ens_infer_members_used": (I, [P, I]),
            "ens_infer_calibration": (D, [P]),
            "ens_infer_class_name": (ctypes.c_char_p, [P, I]),
            "ens_infer_check": (I, [P, P]),
            "ens_infer_ws_create": (I, [ctypes.POINTER(P), P, I, I]),
            "ens_infer_ws_free": (None, [P]),
            "ens_infer_predict": (I, [P, P, P, P, I, I, P]),
        }
        for name, (res, args) in sigs.items():
            f = getattr(lib, name)
            f.restype = res
            f.argtypes = args
        _lib = lib
        return lib


class _Opts(ctypes.Structure):
    _fields_ = [("rule", ctypes.c_int), ("calibrate", ctypes.c_int), ("mc_samples", ctypes.c_int)]


class _Out(ctypes.Structure):
    _fields_ = [(name, ctypes.c_void_p) for name in
                ("probs", "pred", "uncertainty", "mean", "var", "var_aleatoric", "var_epistemic")]


def _check(lib, code, prefix=""):
    if code < 0:
        raise _error(code, prefix + lib.ens_infer_errmsg().decode("utf-8", "replace"))
    return code


class Model:
    """A loaded result file (see load). Metadata: task ("classify" or
    "regress"), inputs, input_shape, classes, targets, members,
    members_total, rules, default_rule, calibration, class_names."""

    def __init__(self, path, batch=0):
        self._lib = _library()
        self.batch = int(batch)
        self._h = ctypes.c_void_p()
        self.path = os.fspath(path)
        _check(self._lib, self._lib.ens_infer_open(ctypes.byref(self._h), self.path.encode()))
        lib, h = self._lib, self._h
        self.task = "regress" if lib.ens_infer_task(h) == 1 else "classify"
        self.inputs = lib.ens_infer_inputs(h)
        dims = (ctypes.c_int * 8)()
        rank = lib.ens_infer_input_shape(h, dims, 8)
        self.input_shape = tuple(dims[i] for i in range(min(rank, 8)))
        self.classes = lib.ens_infer_classes(h)
        self.targets = lib.ens_infer_targets(h)
        self.members = lib.ens_infer_members(h)
        self.members_total = lib.ens_infer_members_total(h)
        mask = lib.ens_infer_rules(h)
        self.rules = tuple(r for i, r in enumerate(RULES) if mask >> i & 1)
        self.default_rule = RULES[lib.ens_infer_default_rule(h)]
        cal = lib.ens_infer_calibration(h)
        self.calibration = cal if cal > 0 else None
        names = [lib.ens_infer_class_name(h, c) for c in range(self.classes)]
        self.class_names = [n.decode() for n in names] if names and names[0] is not None else None
        self._tls = threading.local()
        self._workspaces = []

    def _ws(self):
        ws = getattr(self._tls, "ws", None)
        if ws is None:
            ws = ctypes.c_void_p()
            _check(self._lib, self._lib.ens_infer_ws_create(ctypes.byref(ws), self._h, 0, self.batch))
            self._tls.ws = ws
            with _lock:
                self._workspaces.append(ws)
        return ws

    def predict(self, x, rule=None, calibrate=True, mc_samples=0):
        """Predictions for raw rows x: (n, features), a single row (features,),
        or images (n, *input_shape); the result's standardization is applied.
        rule: None (the result's own), "average", "vote", "params", "select".
        Returns a dict of numpy arrays: probs (n, C), pred (n), uncertainty
        (n, 3) for classification; mean, var, var_aleatoric, var_epistemic
        (n, T) for regression."""
        if self._h is None:
            raise InputError(-2, f"{self.path}: the model is closed")
        x = np.asarray(x)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim < 1 or x.shape[0] < 1:
            raise InputError(-6, f"no rows to predict (shape {x.shape})")
        x = np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float32)
        n, d = x.shape
        if rule is None:
            r = -1
        elif rule in RULES:
            r = RULES.index(rule)
        else:
            raise InputError(-2, f"rule {rule!r}: expected one of {', '.join(RULES)}")
        opts = _Opts(r, 1 if calibrate else 0, int(mc_samples))
        res, out = {}, _Out()
        if self.task == "classify":
            res["probs"] = np.empty((n, self.classes), np.float32)
            res["pred"] = np.empty(n, np.int32)
            res["uncertainty"] = np.empty((n, 3), np.float32)
        else:
            for k in ("mean", "var", "var_aleatoric", "var_epistemic"):
                res[k] = np.empty((n, self.targets), np.float32)
        for k, a in res.items():
            setattr(out, k, a.ctypes.data)
        _check(self._lib, self._lib.ens_infer_predict(
            self._h, self._ws(), ctypes.addressof(opts), x.ctypes.data, n, d,
            ctypes.addressof(out)), f"{self.path}: ")
        return res

    def members_used(self, rule=None):
        r = -1 if rule is None else RULES.index(rule)
        return _check(self._lib, self._lib.ens_infer_members_used(self._h, r))

    def close(self):
        if self._h is not None:
            with _lock:
                for ws in self._workspaces:
                    self._lib.ens_infer_ws_free(ws)
                self._workspaces = []
            self._lib.ens_infer_close(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return (f"ens.Model({self.path!r}: {self.task}, {self.inputs} inputs, "
                f"{self.classes or self.targets} {'classes' if self.classes else 'targets'}, "
                f"{self.members} members, rule {self.default_rule})")


def load(path, batch=0):
    """Opens result file `path` (from ens train); raises ens.FormatError when it
    is not a readable ens result. batch = 0 runs every member in batches of
    its training batch size, which gives `ens predict`'s bits; batch > 0 takes
    libens's fast path: MLP members compiled with batch norm folded in, faster
    for many rows and for single rows, with bits that do not depend on the
    batch or on how rows are split into calls but may differ from
    `ens predict`'s in the last bits (see docs/LIBRARY.md)."""
    return Model(path, batch)


def version():
    return _library().ens_infer_version().decode()
