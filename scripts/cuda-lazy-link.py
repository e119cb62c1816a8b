#!/usr/bin/env python3
"""Lazy-binding link stubs for the CUDA build, so that the binary starts on machines without a GPU.

candle 0.11 builds cudarc with `dynamic-linking`: every CUDA library it calls (the driver `libcuda`,
cuBLAS, cuBLASLt, cuRAND, NVRTC) becomes a load-time dependency, and a binary linked that way does
not even start where the NVIDIA driver is missing ("libcuda.so.1: cannot open shared object file").
The linker resolves `-lcuda` (and the others) with `libcuda.so` or, failing that, `libcuda.a` in its
search path. This script writes such archives: for every function cudarc declares, a 6-byte stub
`jmp *slot` whose slot first points at a resolver that `dlopen`s the real library by its soname,
`dlsym`s the function, stores it in the slot and jumps to it (all argument registers preserved, so it
works for any signature). Later calls cost one indirect jump.

If the library cannot be opened, driver functions return CUDA_ERROR_STUB_LIBRARY (34) like NVIDIA's
own stub library, so `cuInit` fails cleanly and candle reports an error; the other libraries abort
with a message naming the missing file. cinevec opens all of them itself before touching the GPU
(src/engine/device.rs) and falls back to the CPU when one is missing, so neither path is reached in
practice.

    cuda-lazy-link.py OUT_DIR CUDARC_SRC CUDA_MAJOR     write OUT_DIR/lib{cuda,cublas,...}.a
    cuda-lazy-link.py --self-test                       check the stubs on a test library (x86-64)

x86-64 Linux (System V ABI) only.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

CUDA_ERROR_STUB_LIBRARY = 34
CUDA_ERROR_NOT_FOUND = 500


def libraries(cuda_major):
    """(link name, soname, cudarc sys module, error code to return when missing or None to abort)."""
    return [
        ("cuda", "libcuda.so.1", "driver", CUDA_ERROR_STUB_LIBRARY),
        ("cublas", f"libcublas.so.{cuda_major}", "cublas", None),
        ("cublasLt", f"libcublasLt.so.{cuda_major}", "cublaslt", None),
        ("curand", "libcurand.so.10", "curand", None),
        ("nvrtc", f"libnvrtc.so.{cuda_major}", "nvrtc", None),
    ]


# `extern "C" { fn cuInit(` in cudarc's bindings: the symbols its `dynamic-linking` build references.
EXTERN_FN = re.compile(r'extern\s+"C"\s*\{\s*(?:#\[[^\]]*\]\s*)*(?:pub\s+)?fn\s+(\w+)\s*\(')


def cudarc_symbols(cudarc_src, module):
    with open(os.path.join(cudarc_src, "src", module, "sys", "mod.rs")) as f:
        names = sorted(set(EXTERN_FN.findall(f.read())))
    if not names:
        sys.exit(f"cuda-lazy-link: no functions found in cudarc's {module} bindings")
    return names


def stub_source(tag, soname, symbols, missing_code):
    """C source (with top-level assembly) defining every symbol as a lazily bound stub."""
    slots = f"cinevec_lazy_{tag}_slots"
    resolve = f"cinevec_lazy_{tag}_resolve"
    common = f"cinevec_lazy_{tag}_common"
    asm = ["    .pushsection .text"]
    for i, name in enumerate(symbols):
        asm += [
            "    .p2align 4",
            f"    .globl {name}",
            f"    .type {name}, @function",
            f"{name}:",
            f"    jmp *{slots}+{8 * i}(%rip)",
            f"    .size {name}, .-{name}",
        ]
    for i in range(len(symbols)):
        asm += [f"cinevec_lazy_{tag}_r{i}:", f"    movl ${i}, %r11d", f"    jmp {common}"]
    # On entry the stack is as the caller left it for the real function (return address on top):
    # save the integer and vector argument registers and %rax (vector-register count of variadic
    # calls); 7 pushes re-align the stack to 16 bytes for the call.
    regs = ["rdi", "rsi", "rdx", "rcx", "r8", "r9", "rax"]
    asm += [f"{common}:"]
    asm += [f"    pushq %{r}" for r in regs]
    asm += ["    subq $128, %rsp"]
    asm += [f"    movdqu %xmm{k}, {16 * k}(%rsp)" for k in range(8)]
    asm += ["    movq %r11, %rdi", f"    call {resolve}@PLT", "    movq %rax, %r11"]
    asm += [f"    movdqu {16 * k}(%rsp), %xmm{k}" for k in range(8)]
    asm += ["    addq $128, %rsp"]
    asm += [f"    popq %{r}" for r in reversed(regs)]
    asm += ["    jmp *%r11", "    .popsection"]
    # (push/pop: the compiler must find itself back in the section it left.)
    asm += ["    .pushsection .data", "    .p2align 3", f"    .globl {slots}", f"    .hidden {slots}", f"{slots}:"]
    asm += [f"    .quad cinevec_lazy_{tag}_r{i}" for i in range(len(symbols))]
    asm += ["    .popsection"]
    asm_text = "\n".join(f'"{line}\\n"' for line in asm)
    names = ",\n    ".join(f'"{s}"' for s in symbols)
    if missing_code is None:
        on_missing_lib = (
            f'fprintf(stderr, "cinevec: cannot load {soname} (%s); this CUDA build needs it: put the folder '
            f'holding it on LD_LIBRARY_PATH\\n", dlerror());\n        abort();'
        )
        on_missing_sym = (
            f'fprintf(stderr, "cinevec: {soname} has no function %s (a CUDA version older than this build?)\\n", '
            f"names[i]);\n        abort();"
        )
    else:
        on_missing_lib = "return (void *)&missing_lib;"
        on_missing_sym = "return (void *)&missing_sym;"
    return f"""/* Generated by scripts/cuda-lazy-link.py: lazily bound {soname} ({len(symbols)} functions). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

extern void *{slots}[];
static const char *const names[{len(symbols)}] = {{
    {names}
}};
static void *handle;

static int missing_lib(void) {{ return {missing_code if missing_code is not None else 0}; }}
static int missing_sym(void) {{ return {CUDA_ERROR_NOT_FOUND}; }}

__attribute__((visibility("hidden"), used)) void *{resolve}(unsigned long i) {{
    (void)missing_lib;
    (void)missing_sym;
    void *h = __atomic_load_n(&handle, __ATOMIC_ACQUIRE);
    if (!h) {{
        h = dlopen("{soname}", RTLD_NOW | RTLD_GLOBAL);
        if (!h) {{
            {on_missing_lib}
        }}
        __atomic_store_n(&handle, h, __ATOMIC_RELEASE);
    }}
    void *f = dlsym(h, names[i]);
    if (!f) {{
        {on_missing_sym}
    }}
    __atomic_store_n(&{slots}[i], f, __ATOMIC_RELEASE);
    return f;
}}

__asm__(
{asm_text}
);
"""


def build_archive(out_dir, tag, link_name, soname, symbols, missing_code, cc):
    src = os.path.join(out_dir, f"lazy-{tag}.c")
    obj = os.path.join(out_dir, f"lazy-{tag}.o")
    lib = os.path.join(out_dir, f"lib{link_name}.a")
    with open(src, "w") as f:
        f.write(stub_source(tag, soname, symbols, missing_code))
    subprocess.run([cc, "-O2", "-fPIC", "-c", src, "-o", obj], check=True)
    if os.path.exists(lib):
        os.remove(lib)
    subprocess.run(["ar", "rcs", lib, obj], check=True)
    return lib


def generate(out_dir, cudarc_src, cuda_major):
    os.makedirs(out_dir, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    for link_name, soname, module, missing_code in libraries(cuda_major):
        symbols = cudarc_symbols(cudarc_src, module)
        tag = link_name.lower()
        build_archive(out_dir, tag, link_name, soname, symbols, missing_code, cc)
        print(f"lib{link_name}.a: {len(symbols)} lazily bound functions of {soname}")


SELF_TEST_LIB = r"""
#include <stdarg.h>
double mix(int a, double b, long c, float d, long e, double f, long g, long h, long i, double j, long k) {
    return a + b * 2 + c * 3 + d * 4 + e * 5 + f * 6 + g * 7 + h * 8 + i * 9 + j * 10 + k * 11;
}
struct big { long x[5]; };
long by_value(struct big s, int n) { return s.x[0] + s.x[4] * n; }
long sum_va(int n, ...) { va_list ap; va_start(ap, n); long s = 0; double d = 0;
    for (int i = 0; i < n; i++) { s += va_arg(ap, long); d += va_arg(ap, double); }
    va_end(ap); return s + (long)d; }
int status(void) { return 7; }
"""

SELF_TEST_MAIN = r"""
#include <stdio.h>
#include <pthread.h>
double mix(int, double, long, float, long, double, long, long, long, double, long);
struct big { long x[5]; };
long by_value(struct big s, int n);
long sum_va(int n, ...);
int status(void);
int absent(void);
static void *hammer(void *arg) { (void)arg; double t = 0; for (int i = 0; i < 1000; i++) t += mix(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11); return (void *)(long)(t == 1000 * 506.0); }
int main(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        /* The library is missing: every stub must return the error code, 1. */
        struct big s = {{1, 2, 3, 4, 5}};
        int bad = (status() != 1) + (absent() != 1) + (by_value(s, 3) != 1) + (sum_va(1, 1L, 0.5) != 1);
        printf("library missing, every stub returned the error code: %s\n", bad ? "FAILED" : "ok");
        return bad != 0;
    }
    int bad = 0;
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], 0, hammer, 0);
    for (int i = 0; i < 4; i++) { void *ok; pthread_join(th[i], &ok); bad += !ok; }
    double m = mix(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
    struct big s = {{1, 2, 3, 4, 5}};
    long v = by_value(s, 3);
    long va = sum_va(3, 1L, 0.5, 2L, 1.0, 3L, 1.5);
    int st = status();
    int ab = absent();
    bad += m != 506.0; bad += v != 16; bad += va != 9; bad += st != 7; bad += ab != 500;
    printf("mix %g by_value %ld sum_va %ld status %d absent %d: %s\n", m, v, va, st, ab, bad ? "FAILED" : "ok");
    return bad != 0;
}
"""


def self_test():
    cc = os.environ.get("CC", "cc")
    tmp = tempfile.mkdtemp(prefix="cinevec-lazy-")
    try:
        with open(os.path.join(tmp, "t.c"), "w") as f:
            f.write(SELF_TEST_LIB)
        libdir = os.path.join(tmp, "real")
        os.makedirs(libdir)
        subprocess.run([cc, "-O2", "-fPIC", "-shared", "-Wl,-soname,libcinevectest.so.3", os.path.join(tmp, "t.c"),
                        "-o", os.path.join(libdir, "libcinevectest.so.3")], check=True)
        stubs = os.path.join(tmp, "stubs")
        os.makedirs(stubs)
        # `absent` is not in the library: with an error code set, the stub returns CUDA_ERROR_NOT_FOUND.
        build_archive(stubs, "t", "cinevectest", "libcinevectest.so.3",
                      ["mix", "by_value", "sum_va", "status", "absent"], 1, cc)
        with open(os.path.join(tmp, "main.c"), "w") as f:
            f.write(SELF_TEST_MAIN)
        exe = os.path.join(tmp, "main")
        subprocess.run([cc, "-O2", "-pie", "-fPIE", os.path.join(tmp, "main.c"), "-L" + stubs, "-lcinevectest",
                        "-lpthread", "-ldl", "-Wl,-z,now", "-o", exe], check=True)
        needed = subprocess.run(["readelf", "-d", exe], capture_output=True, text=True).stdout
        if "libcinevectest" in needed:
            sys.exit("self-test: the executable still needs the library at load time")
        env = dict(os.environ, LD_LIBRARY_PATH=libdir)
        ok = subprocess.run([exe], env=env).returncode == 0
        # Without the library the process must still start, and the stub return the error code.
        missing = subprocess.run([exe, "missing"], env=dict(os.environ, LD_LIBRARY_PATH=tmp), capture_output=True,
                                 text=True)
        print(missing.stdout.strip() or missing.stderr.strip())
        if not ok or missing.returncode != 0:
            sys.exit("self-test FAILED")
        print("cuda-lazy-link self-test: ok")
    finally:
        shutil.rmtree(tmp)


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    elif len(sys.argv) == 4:
        generate(sys.argv[1], sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
