#!/usr/bin/python3
"""Structure-aware sweep of the files ens reads (issue 11).

Generates random HDF5 files in and around the layouts ens reads, from a fixed
seed, and runs ens on each:

  input  data files: `ens train` and `ens predict -i` under `mpirun -np 2`
  model  result files given to `ens predict -m` (and `ens info`)
  merge  result files given as a part to `ens merge`
  trunk  files given as `[trunk] file` to `ens train` under `mpirun -np 2`

Variations: dtypes (integers of every width and sign, float16/32/64, big
endian, bool, fixed and variable-length strings, compound, complex, enum,
array, opaque, references), ranks, shapes, missing and extra datasets,
groups in place of datasets and back, soft/external/hard links, attribute
types and values, empty splits, NaN/Inf, labels out of range, filters HDF5
cannot decode, huge declared sizes (chunked datasets whose storage is never
written), truncated and non-HDF5 files.

Every run must exit 0, or exit 1 with at most MAX_LINES lines from ens on
stderr that name the file; no crash (signal, sanitizer report), no hang
(timeout), no MPI_ABORT notice. Prints the number of cases per family and
exits 1 when any case fails (its files are kept in WORKDIR/failed/).

usage: sweep_inputs.py ENS WORKDIR [--full] [--seed S] [--only FAMILY[:CASE]]
                                   [--timeout SECONDS] [--counts input=N,...]
Default: 100 cases (input 52, model 18, merge 15, trunk 15); --full (or
ENS_SWEEP_FULL=1): 910 cases (input 520, model 150, merge 120, trunk 120).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

MAX_LINES = 4
DEFAULT = {"input": 52, "model": 18, "merge": 15, "trunk": 15}
FULL = {"input": 520, "model": 150, "merge": 120, "trunk": 120}
FAMILY_KEYS = {"input": 1, "model": 2, "merge": 3, "trunk": 4}
BAD_PATTERNS = [
    "MPI_ABORT", "Segmentation", "segmentation fault", "core dumped", "AddressSanitizer",
    "LeakSanitizer", "runtime error:", "HDF5-DIAG", "infinite loop closing library",
    "exited on signal", "Aborted", "Floating point exception", "double free",
]

# ---------------------------------------------------------------- dtypes


def all_dtypes():
    """(name, numpy dtype) of every kind a file may hold."""
    out = [(n, np.dtype(n)) for n in (
        "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8", ">f4", ">f8", ">i4",
        "<u8", "?", "S8", "S1", "c8", "c16", "V4")]
    out.append(("vlen-str", h5py.string_dtype("utf-8")))
    out.append(("vlen-bytes", h5py.string_dtype("ascii")))
    out.append(("compound", np.dtype([("a", "f4"), ("b", "i4")])))
    out.append(("array", np.dtype(("f4", (2,)))))
    out.append(("enum", h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 2}, basetype="i1")))
    out.append(("ref", h5py.ref_dtype))
    out.append(("vlen-f4", h5py.vlen_dtype(np.float32)))
    return out


DTYPES = all_dtypes()


def convert(values, dt, f=None):
    """values (a numeric ndarray) as dtype dt, as far as that means anything."""
    shape = values.shape
    flat = np.asarray(values).reshape(-1)
    kind = dt.kind
    if dt == h5py.ref_dtype:
        arr = np.empty(flat.shape, dtype=dt)
        for i in range(arr.size):
            arr[i] = f.ref if f is not None else None
        return arr.reshape(shape)
    if h5py.check_vlen_dtype(dt) is not None and h5py.check_string_dtype(dt) is None:
        arr = np.empty(flat.shape, dtype=object)
        for i in range(arr.size):
            arr[i] = np.full(1 + i % 3, flat[i] if np.isfinite(flat[i]) else 0, dtype=np.float32)
        return arr.reshape(shape)
    sinfo = h5py.check_string_dtype(dt)
    if sinfo is not None:
        if dt.kind == "S":
            return np.array([("%g" % v).encode() for v in flat], dtype=dt).reshape(shape)
        ascii = sinfo.encoding == "ascii"
        arr = np.array([(("%g" % v).encode() if ascii else "%g" % v) for v in flat],
                       dtype=object)
        return arr.reshape(shape)
    if dt.names:
        arr = np.zeros(flat.shape, dtype=dt)
        arr["a"] = flat
        arr["b"] = np.nan_to_num(flat).astype(np.int64).astype(np.int32)
        return arr.reshape(shape)
    if dt.subdtype is not None:
        arr = np.zeros(flat.shape, dtype=dt)
        arr[...] = np.nan_to_num(flat)[:, None]
        return arr.reshape(shape)
    if kind == "V":
        return np.zeros(shape, dtype=dt)
    if h5py.check_enum_dtype(dt) is not None:
        return (np.abs(np.nan_to_num(flat)).astype(np.int64) % 3).astype(np.int8).reshape(shape)
    if kind in "iu":
        info = np.iinfo(dt)
        v = np.nan_to_num(flat, nan=0, posinf=info.max, neginf=info.min)
        return np.clip(np.round(v), info.min, info.max).astype(dt).reshape(shape)
    if kind == "b":
        return (np.nan_to_num(flat) > 0).reshape(shape)
    if kind == "c":
        return (flat + 1j * flat).astype(dt).reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):
        return flat.astype(dt).reshape(shape)


# ------------------------------------------------------------- the layout


WIDTHS = (1, 3, 6)


def base_spec(rng, d=None):
    """A valid input layout: {path: ndarray}, attrs, some random sizes."""
    d = int(rng.choice(WIDTHS)) if d is None else d
    ntr, nte = int(rng.integers(24, 80)), int(rng.integers(5, 30))
    C = 3
    centers = rng.normal(0, 2, size=(C, d))

    def draw(n):
        y = rng.integers(0, C, size=n)
        return centers[y] + rng.normal(0, 1, size=(n, d)), y.astype(np.int8)

    spec = {"datasets": {}, "attrs": {}, "extra": [], "d": d}
    for split, n in (("train", ntr), ("test", nte)):
        x, y = draw(n)
        spec["datasets"][f"/{split}/x"] = x
        spec["datasets"][f"/{split}/y"] = y
    if rng.random() < 0.25:
        x, y = draw(int(rng.integers(4, 20)))
        spec["datasets"]["/val/x"] = x
        spec["datasets"]["/val/y"] = y
    if rng.random() < 0.5:
        spec["attrs"]["classes"] = np.int32(C)
    return spec


def pick_dataset(rng, spec, prefer=None):
    names = sorted(spec["datasets"])
    if prefer:
        names = [n for n in names if n.endswith(prefer)] or names
    return names[int(rng.integers(len(names)))] if names else None


def m_dtype(rng, spec):
    name = pick_dataset(rng, spec)
    if name:
        dn, dt = DTYPES[int(rng.integers(len(DTYPES)))]
        spec.setdefault("dtypes", {})[name] = dt
        return f"dtype {name} {dn}"
    return "dtype: nothing"


def m_rank(rng, spec):
    name = pick_dataset(rng, spec)
    if not name:
        return "rank: nothing"
    a = np.asarray(spec["datasets"][name])
    choice = int(rng.integers(5))
    if choice == 0:
        a = np.asarray(a.reshape(-1)[0] if a.size else 0)  # scalar
    elif choice == 1:
        a = a.reshape(-1)
    elif choice == 2:
        a = a.reshape(a.shape + (1,))
    elif choice == 3:
        a = a.reshape((1,) + a.shape)
    else:
        a = np.stack([a, a], axis=-1)
    spec["datasets"][name] = a
    return f"rank {name} -> {a.shape}"


def m_shape(rng, spec):
    name = pick_dataset(rng, spec)
    if not name:
        return "shape: nothing"
    a = np.asarray(spec["datasets"][name])
    choice = int(rng.integers(6))
    if choice == 0 and a.ndim >= 1:
        a = a[: max(0, a.shape[0] - int(rng.integers(1, 4)))]  # fewer rows
    elif choice == 1 and a.ndim >= 1:
        a = np.concatenate([a, a[:2]], axis=0)  # more rows
    elif choice == 2:
        a = a[:0]  # no rows
    elif choice == 3 and a.ndim == 2:
        a = a[:, :0]  # no columns
    elif choice == 4 and a.ndim == 2:
        a = np.concatenate([a, a], axis=1)  # other width
    else:
        a = a[:1]  # one row
    spec["datasets"][name] = a
    return f"shape {name} -> {a.shape}"


def m_missing(rng, spec):
    name = pick_dataset(rng, spec)
    if name:
        del spec["datasets"][name]
    return f"missing {name}"


def m_extra(rng, spec):
    choice = int(rng.integers(9))
    kinds = ["extra dataset", "x as group", "split as dataset", "soft link", "dangling link",
             "external link", "hard link", "extra attrs", "nested groups"]
    spec["extra"].append(kinds[choice])
    if choice == 1:
        spec["target"] = pick_dataset(rng, spec)
    return kinds[choice]


def m_attr(rng, spec):
    values = [np.float64(3.0), "three", np.array([3, 3], dtype=np.int32), np.int64(-1),
              np.int64(0), np.int64(1), np.int64(2 ** 40), np.bool_(True), np.int8(2),
              np.uint64(2 ** 63), np.array([], dtype=np.int32),
              np.zeros(1, dtype=[("a", "i4")])[0], np.float32(np.nan), np.int32(1000000)]
    v = values[int(rng.integers(len(values)))]
    spec["attrs"]["classes"] = v
    return f"attr classes = {v!r}"


def m_empty(rng, spec):
    split = ["train", "test", "val"][int(rng.integers(3))]
    d = spec["d"]
    spec["datasets"][f"/{split}/x"] = np.zeros((0, d))
    spec["datasets"][f"/{split}/y"] = np.zeros((0,), dtype=np.int8)
    return f"empty /{split}"


def m_nonfinite(rng, spec):
    name = pick_dataset(rng, spec, prefer="x" if rng.random() < 0.7 else "y")
    if not name:
        return "nonfinite: nothing"
    a = np.array(spec["datasets"][name], dtype=np.float64)
    if a.size:
        idx = tuple(int(rng.integers(s)) for s in a.shape) if a.ndim else ()
        a[idx] = [np.nan, np.inf, -np.inf, 1e300, -1e39][int(rng.integers(5))]
    spec["datasets"][name] = a
    return f"non-finite in {name}"


def m_huge(rng, spec):
    name = pick_dataset(rng, spec)
    if not name:
        return "huge: nothing"
    shapes = [(2 ** 31, 4), (10 ** 7, 10 ** 5), (4, 2 ** 40), (2 ** 40,), (10 ** 12,),
              (10 ** 6, 10 ** 6), (3, 2 ** 33), (2 ** 20, 2 ** 20, 4)]
    shape = shapes[int(rng.integers(len(shapes)))]
    spec.setdefault("huge", {})[name] = shape
    return f"huge {name} {shape}"


def m_labels(rng, spec):
    name = pick_dataset(rng, spec, prefer="y")
    if not name:
        return "labels: nothing"
    a = np.array(spec["datasets"][name], dtype=np.int64)
    if a.size:
        idx = tuple(int(rng.integers(s)) for s in a.shape) if a.ndim else ()
        a[idx] = [-1, 2 ** 31, 2 ** 40, 3, 255, -2 ** 62][int(rng.integers(6))]
    spec["datasets"][name] = a
    return f"label values in {name}"


def m_filter(rng, spec):
    name = pick_dataset(rng, spec)
    if name:
        spec.setdefault("filters", {})[name] = ["lzf", "gzip", "scaleoffset", "fletcher32"][
            int(rng.integers(4))]
    return f"filter on {name}"


def m_float_y(rng, spec):
    name = pick_dataset(rng, spec, prefer="y")
    if name:
        a = np.asarray(spec["datasets"][name], dtype=np.float64)
        spec["datasets"][name] = a + rng.normal(0, 0.3, size=a.shape)
    return f"float targets in {name}"


MUTATIONS = [m_dtype, m_dtype, m_rank, m_shape, m_shape, m_missing, m_extra, m_attr, m_empty,
             m_nonfinite, m_huge, m_labels, m_filter, m_float_y]


def write_spec(path, spec, rng):
    with h5py.File(path, "w") as f:
        for name, a in spec["datasets"].items():
            a = np.asarray(a)
            kw = {}
            flt = spec.get("filters", {}).get(name)
            if name in spec.get("huge", {}):
                shape = spec["huge"][name]
                dt = spec.get("dtypes", {}).get(name, np.dtype("f4"))
                try:
                    f.create_dataset(name, shape=shape, dtype=dt, chunks=(1,) * len(shape),
                                     maxshape=(None,) * len(shape))
                except Exception:
                    f.create_dataset(name, shape=shape, dtype="f4", chunks=(1,) * len(shape))
                continue
            dt = spec.get("dtypes", {}).get(name)
            try:
                data = convert(a, dt, f) if dt is not None else a
            except Exception:  # no meaningful conversion: keep the numbers
                data, dt = a, None
            if flt and data.ndim >= 1 and data.size > 0:
                kw["chunks"] = True
                if flt == "lzf":
                    kw["compression"] = "lzf"
                elif flt == "gzip":
                    kw["compression"] = "gzip"
                    kw["shuffle"] = True
                elif flt == "scaleoffset" and data.dtype.kind in "iu":
                    kw["scaleoffset"] = 0
                elif flt == "fletcher32":
                    kw["fletcher32"] = True
            try:
                f.create_dataset(name, data=data, dtype=dt if dt is not None else data.dtype,
                                 **kw)
            except Exception:  # h5py cannot store these values as that type
                if name in f:
                    del f[name]
                f.create_dataset(name, data=a)
        for k, v in spec["attrs"].items():
            f.attrs[k] = v
        for kind in spec["extra"]:
            if kind == "extra dataset":
                f["/notes"] = np.arange(5)
                f["/train/weights"] = np.ones(3)
            elif kind == "x as group":
                t = spec.get("target") or "/train/x"
                if t in f:
                    del f[t]
                g = f.create_group(t)
                g["inner"] = np.ones((3, 3))
            elif kind == "split as dataset":
                if "/test" in f:
                    del f["/test"]
                f["/test"] = np.ones((4, 4))
            elif kind == "soft link":
                if "/test/x" in f:
                    del f["/test/x"]
                f["/test/x"] = h5py.SoftLink("/train/x")
            elif kind == "dangling link":
                if "/train/y" in f:
                    del f["/train/y"]
                f["/train/y"] = h5py.SoftLink("/nowhere/y")
            elif kind == "external link":
                if "/test/y" in f:
                    del f["/test/y"]
                f["/test/y"] = h5py.ExternalLink("missing-file.h5", "/y")
            elif kind == "hard link":
                if "/val" not in f and "/train/x" in f and "/train/y" in f:
                    f["/val/x"] = f["/train/x"]
                    f["/val/y"] = f["/train/y"]
            elif kind == "extra attrs":
                f.attrs["comment"] = "x" * 1000
                f.attrs["weird"] = np.zeros((2, 2))
                if "/train/x" in f:
                    f["/train/x"].attrs["units"] = b"m"
            elif kind == "nested groups":
                f.create_group("/a/b/c/d/e")


def make_input(path, rng):
    """Writes one input case; returns its description."""
    kind = rng.random()
    if kind < 0.04:
        with open(path, "wb") as fh:
            fh.write(bytes(rng.integers(0, 256, size=int(rng.integers(0, 600)), dtype=np.uint8)))
        return "not HDF5 (random bytes)", 6
    spec = base_spec(rng)
    what = []
    for _ in range(int(rng.integers(0, 4)) if kind < 0.97 else 0):
        what.append(MUTATIONS[int(rng.integers(len(MUTATIONS)))](rng, spec))
    write_spec(path, spec, rng)
    if 0.97 <= kind:
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.truncate(int(rng.integers(0, size)))
        what.append("truncated")
    return "; ".join(what) or "valid", spec["d"]


# ---------------------------------------------------- results and trunks


def copy_h5(src, dst):
    shutil.copyfile(src, dst)


def mutate_result(path, rng, kind):
    """Applies 1-3 random changes to an ens result (or trunk) file in place."""
    what = []
    with h5py.File(path, "r+") as f:
        datasets, groups = [], []
        f.visititems(lambda n, o: (datasets if isinstance(o, h5py.Dataset) else groups).append(
            "/" + n))
        for _ in range(int(rng.integers(1, 4))):
            op = int(rng.integers(9))
            if op == 0 and datasets:  # drop a dataset
                n = datasets[int(rng.integers(len(datasets)))]
                if n in f:
                    del f[n]
                    what.append(f"drop {n}")
            elif op == 1 and datasets:  # retype or reshape a dataset
                n = datasets[int(rng.integers(len(datasets)))]
                if n not in f or not isinstance(f[n], h5py.Dataset) or f[n].size > 10 ** 6:
                    continue
                a = np.asarray(f[n][()], dtype=np.float64) if f[n].dtype.kind in "iufb" else \
                    np.zeros(3)
                del f[n]
                choice = int(rng.integers(5))
                if choice == 0:
                    a = a.reshape(-1)[: max(0, a.size - int(rng.integers(1, 5)))]
                elif choice == 1:
                    a = np.concatenate([a.reshape(-1), np.ones(7)])
                elif choice == 2:
                    a = a.reshape(-1)[:, None] if a.size else a
                dn, dt = DTYPES[int(rng.integers(len(DTYPES)))] if choice == 3 else ("f8", None)
                try:
                    f.create_dataset(n, data=convert(a, dt, f) if dt is not None else a,
                                     dtype=dt if dt is not None else a.dtype)
                except Exception:  # h5py cannot store these values as that type
                    if n in f:
                        del f[n]
                    f.create_dataset(n, data=a)
                    dn = "f8"
                what.append(f"rewrite {n} ({dn}, shape {a.shape})")
            elif op == 2 and datasets:  # huge declared size
                n = datasets[int(rng.integers(len(datasets)))]
                if n in f:
                    del f[n]
                shape = [(2 ** 40,), (10 ** 12,), (2 ** 31, 3), (10 ** 6, 10 ** 6)][
                    int(rng.integers(4))]
                f.create_dataset(n, shape=shape, dtype="f4", chunks=(1,) * len(shape))
                what.append(f"huge {n} {shape}")
            elif op == 3:  # attribute changes
                objs = ["/"] + [g for g in groups if g in f]
                o = objs[int(rng.integers(len(objs)))]
                names = list(f[o].attrs.keys())
                if not names:
                    continue
                a = names[int(rng.integers(len(names)))]
                vals = [np.int64(-1), np.int64(0), np.int64(2 ** 40), np.int64(1 << 30), "text",
                        np.float64(np.nan), np.array([1, 2]), np.int64(99), np.int64(1000000)]
                v = vals[int(rng.integers(len(vals)))]
                if rng.random() < 0.3:
                    del f[o].attrs[a]
                    what.append(f"drop attr {a} of {o}")
                else:
                    f[o].attrs[a] = v
                    what.append(f"attr {a} of {o} = {v!r}")
            elif op == 4 and "config" in f.attrs:  # config text
                text = f.attrs["config"]
                text = text.decode() if isinstance(text, bytes) else str(text)
                edits = [("hidden = 8", "hidden = 100000,100000,100000"),
                         ("hidden = 8", "hidden = 0"), ("members = 4", "members = 1000000"),
                         ("members = 2", "members = 16777216"), ("batch = 16", "batch = 0"),
                         ("[model]", "[model]\nunknown_key = 1"), ("epochs = 1", "epochs = -3"),
                         ("trunk_layers", "trunk_layers = 40\n#")]
                a, b = edits[int(rng.integers(len(edits)))]
                if rng.random() < 0.15:
                    text = "garbage ][ = ="
                    what.append("config garbage")
                else:
                    text = text.replace(a, b)
                    what.append(f"config {b!r}")
                f.attrs["config"] = text
            elif op == 5:  # a group where a dataset was, or the reverse
                n = (datasets + groups)[int(rng.integers(len(datasets) + len(groups)))]
                if n in f and n != "/":
                    del f[n]
                    if n in datasets:
                        f.create_group(n)
                    else:
                        f[n] = np.ones(2)
                    what.append(f"swap kind of {n}")
            elif op == 6:  # member status
                members = [g for g in groups if re.fullmatch(r"/members/\d+", g) and g in f]
                if members:
                    g = members[int(rng.integers(len(members)))]
                    f[g].attrs["status"] = ["failed", "weird", "done"][int(rng.integers(3))]
                    what.append(f"status of {g}")
            elif op == 7 and datasets:  # NaN in a float dataset
                n = datasets[int(rng.integers(len(datasets)))]
                if n in f and isinstance(f[n], h5py.Dataset) and f[n].dtype.kind == "f" and \
                        0 < f[n].size <= 10 ** 6:
                    a = f[n][()]
                    a.reshape(-1)[int(rng.integers(a.size))] = np.nan
                    f[n][...] = a
                    what.append(f"NaN in {n}")
            elif op == 8:  # soft link to elsewhere
                if datasets:
                    n = datasets[int(rng.integers(len(datasets)))]
                    if n in f:
                        del f[n]
                        f[n] = h5py.SoftLink("/nowhere")
                        what.append(f"dangling link {n}")
    if rng.random() < 0.05:
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.truncate(int(rng.integers(0, size)))
        what.append("truncated")
    return "; ".join(what) or "unchanged"


# ---------------------------------------------------------------- running


class Runner:
    def __init__(self, ens, work, timeout):
        self.ens = ens
        self.work = work
        self.timeout = timeout
        # odls_base_sigkill_timeout = 0: when a rank exits non-zero, mpirun
        # kills the others at once instead of waiting a second (they have
        # finished anyway: MPI_Finalize synchronizes them). It changes no
        # exit code or message, and makes an exit-1 case cost 0.3 s, not 1.3.
        self.env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                        OMPI_MCA_rmaps_base_oversubscribe="1",
                        OMPI_MCA_odls_base_sigkill_timeout="0")

    def run(self, argv, cwd):
        """Returns (code or 'timeout', stdout, stderr)."""
        p = subprocess.Popen(argv, cwd=cwd, env=self.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = p.communicate(timeout=self.timeout)
            return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # our own session: mpirun and its ranks
            out, err = p.communicate()
            return "timeout", out.decode(errors="replace"), err.decode(errors="replace")


def ens_lines(stderr):
    """stderr without mpirun's framed notices about non-zero exit codes."""
    lines, box = [], False
    for line in stderr.splitlines():
        if re.fullmatch(r"-{20,}", line):
            box = not box
            continue
        if not box and line.strip() and not line.startswith("mpirun: Forwarding"):
            lines.append(line)
    return lines


def judge(code, out, err, names):
    """None when the run is acceptable, else why not."""
    text = out + err
    for pat in BAD_PATTERNS:
        if pat in text:
            return f"'{pat}' in the output"
    if code == "timeout":
        return "timeout (hang)"
    if code == 0:
        return None
    if code != 1:
        return f"exit {code}"
    lines = [ln for ln in ens_lines(err) if not ln.startswith("ens: warning")]
    if not lines:
        return "exit 1 without a message"
    if len(lines) > MAX_LINES:
        return f"exit 1 with {len(lines)} lines of message"
    if names and not any(any(n in ln for n in names) for ln in lines):
        return "exit 1 but the message names none of " + ", ".join(names)
    return None


JOB = """[data]
path = {data}
[model]
hidden = 8
[train]
epochs = 1
batch = 16
[ensemble]
members = {members}
{extra}
[output]
path = {out}
verbose = 0
progress_interval = 1000
"""


def write_job(path, data, out, members=2, extra=""):
    with open(path, "w") as fh:
        fh.write(JOB.format(data=data, out=out, members=members, extra=extra))


def prepare_bases(r, work):
    """Valid files the families start from: data and a result per input
    width (so that predict gets past the width check), a result trained on
    a trunk, and two merge parts."""
    b = os.path.join(work, "base")
    os.makedirs(b, exist_ok=True)
    bases = {}
    for d in WIDTHS:
        rng = np.random.default_rng([12345, d])
        spec = base_spec(rng, d)
        spec["datasets"].pop("/val/x", None)
        spec["datasets"].pop("/val/y", None)
        data = os.path.join(b, f"data{d}.h5")
        write_spec(data, spec, rng)
        bases[f"data{d}"] = data
        write_job(os.path.join(b, f"result{d}.ini"), data, os.path.join(b, f"result{d}.h5"))
    data = bases["data6"]
    bases["data"] = data
    trunk = "[trunk]\nsource = pretrain\nlayers = 1\npretrain_epochs = 1"
    write_job(os.path.join(b, "trunkres.ini"), data, os.path.join(b, "trunkres.h5"), extra=trunk)
    with open(os.path.join(b, "trunkres.ini")) as fh:  # a 1-layer trunk needs 2 hidden layers
        text = fh.read().replace("hidden = 8", "hidden = 8,8")
    with open(os.path.join(b, "trunkres.ini"), "w") as fh:
        fh.write(text)
    write_job(os.path.join(b, "parts.ini"), data, os.path.join(b, "parts.h5"), members=4)
    for name in [f"result{d}" for d in WIDTHS] + ["trunkres"]:
        code, out, err = r.run([r.ens, "train", "-c", f"{name}.ini"], b)
        if code != 0:
            sys.exit(f"sweep: base job {name} failed (exit {code}):\n{out}{err}")
        bases[name] = os.path.join(b, f"{name}.h5")
    bases["result"] = bases["result6"]
    for first in (0, 2):
        code, out, err = r.run([r.ens, "train", "-c", "parts.ini", "--set",
                                f"ensemble.first_member={first}", "--set", "ensemble.count=2",
                                "--set", f"output.path={b}/part{first}.h5"], b)
        if code != 0:
            sys.exit(f"sweep: base part {first} failed (exit {code}):\n{out}{err}")
        bases[f"part{first}"] = os.path.join(b, f"part{first}.h5")
    return bases


def case_input(r, bases, d, rng):
    f = os.path.join(d, "case.h5")
    what, width = make_input(f, rng)
    write_job(os.path.join(d, "job.ini"), f, os.path.join(d, "out", "r.h5"))
    os.makedirs(os.path.join(d, "out"))
    runs = [
        ("train", ["mpirun", "-np", "2", r.ens, "train", "-c", "job.ini"]),
        ("predict", ["mpirun", "-np", "2", r.ens, "predict", "-m", bases[f"result{width}"], "-i", f,
                     "-o", os.path.join(d, "p.h5")]),
    ]
    return what, runs, ["case.h5"]


def case_model(r, bases, d, rng):
    f = os.path.join(d, "model.h5")
    copy_h5(bases["trunkres"] if rng.random() < 0.3 else bases["result"], f)
    what = mutate_result(f, rng, "model")
    runs = [
        ("predict", [r.ens, "predict", "-m", f, "-i", bases["data"], "-o",
                     os.path.join(d, "p.h5")]),
        ("info", [r.ens, "info", f]),
    ]
    return what, runs, ["model.h5"]


def case_merge(r, bases, d, rng):
    f = os.path.join(d, "part.h5")
    first = rng.random() < 0.5
    copy_h5(bases["part0"] if first else bases["part2"], f)
    what = mutate_result(f, rng, "merge")
    other = bases["part2"] if first else bases["part0"]
    runs = [("merge", [r.ens, "merge", f, other, "-o", os.path.join(d, "m.h5")])]
    return what, runs, ["part.h5", "part0.h5", "part2.h5", "data6.h5"]


def case_trunk(r, bases, d, rng):
    f = os.path.join(d, "trunk.h5")
    src = bases["trunkres"] if rng.random() < 0.8 else bases["result"]
    copy_h5(src, f)
    what = mutate_result(f, rng, "trunk")
    which = "trunk" if src == bases["trunkres"] else ["ensemble", "member:0", "member:7"][
        int(rng.integers(3))]
    extra = f"[trunk]\nsource = file\nfile = {f}\nlayers = 1\ndataset = {which}"
    write_job(os.path.join(d, "job.ini"), bases["data"], os.path.join(d, "out", "r.h5"),
              extra=extra)
    with open(os.path.join(d, "job.ini")) as fh:
        text = fh.read().replace("hidden = 8", "hidden = 8,8")
    with open(os.path.join(d, "job.ini"), "w") as fh:
        fh.write(text)
    os.makedirs(os.path.join(d, "out"))
    runs = [("train", ["mpirun", "-np", "2", r.ens, "train", "-c", "job.ini"])]
    return what + f" (dataset = {which})", runs, ["trunk.h5"]


CASES = {"input": case_input, "model": case_model, "merge": case_merge, "trunk": case_trunk}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ens")
    ap.add_argument("work")
    ap.add_argument("--full", action="store_true",
                    default=os.environ.get("ENS_SWEEP_FULL", "0") == "1")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("ENS_SWEEP_SEED", "11")))
    ap.add_argument("--only", default=None, help="FAMILY or FAMILY:CASE")
    ap.add_argument("--counts", default=None, help="e.g. input=10,model=5")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    args = ap.parse_args()
    counts = dict(FULL if args.full else DEFAULT)
    if args.counts:
        counts = {k: int(v) for k, v in (kv.split("=") for kv in args.counts.split(","))}
    only_case = None
    if args.only:
        fam, _, c = args.only.partition(":")
        counts = {fam: counts.get(fam, FULL[fam]) if not c else int(c) + 1}
        only_case = int(c) if c else None
    ens = os.path.abspath(args.ens)
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    r = Runner(ens, work, args.timeout)
    t0 = time.time()
    bases = prepare_bases(r, work)
    failed_dir = os.path.join(work, "failed")
    summary, failures = {}, []
    for fam, n in counts.items():
        stats = {"cases": 0, "runs": 0, "exit 0": 0, "exit 1": 0, "failed": 0}
        for i in range(n):
            if only_case is not None and i != only_case:
                continue
            rng = np.random.default_rng([args.seed, FAMILY_KEYS[fam], i])
            d = os.path.join(work, f"{fam}-{i}")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            what, runs, names = CASES[fam](r, bases, d, rng)
            stats["cases"] += 1
            bad = False
            for label, argv in runs:
                t1 = time.time()
                code, out, err = r.run(argv, d)
                stats["runs"] += 1
                if args.verbose:
                    first = (ens_lines(err) or [""])[0][:150]
                    print(f"{fam}:{i} {label} exit {code} {time.time() - t1:.1f}s [{what}] {first}",
                          flush=True)
                why = judge(code, out, err, names)
                if why is None:
                    stats[f"exit {code}"] += 1
                    continue
                bad = True
                failures.append((fam, i, label, what, why, err[-2000:] + out[-500:]))
            if bad:
                stats["failed"] += 1
                os.makedirs(failed_dir, exist_ok=True)
                shutil.rmtree(os.path.join(failed_dir, f"{fam}-{i}"), ignore_errors=True)
                shutil.move(d, os.path.join(failed_dir, f"{fam}-{i}"))
            else:
                shutil.rmtree(d, ignore_errors=True)
        summary[fam] = stats
    for fam, i, label, what, why, tail in failures:
        print(f"FAIL {fam}:{i} ({label}): {why}\n  case: {what}\n  output tail:\n    " +
              tail.strip().replace("\n", "\n    "))
    print(f"sweep (seed {args.seed}{', full' if args.full else ''}, {time.time() - t0:.0f} s):")
    total = 0
    for fam, s in summary.items():
        total += s["cases"]
        print(f"  {fam:6s} {s['cases']:4d} cases, {s['runs']:4d} runs: {s['exit 0']:4d} exit 0, "
              f"{s['exit 1']:4d} exit 1 with a short message, {s['failed']:3d} failed")
    print(f"  total  {total:4d} cases, {len(failures)} failing runs")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
