"""The process `LocalLLMServer` starts: `python -m llama_cpp.server`, with AMX kept out.

    python agent/llama_server_main.py --model m.gguf --port 8080 ...   (llama_cpp.server's flags)

On a CPU with AMX (Intel Xeon since Sapphire Rapids), llama.cpp 0.3.36 built natively puts
the weights in its AMX buffer type, and the first prompt longer than one token dies of
SIGSEGV in `ggml_backend_amx_mul_mat` (llama.cpp issue 20824, open upstream). The wheel pip
builds and caches cannot be told otherwise after the fact (pip's wheel cache ignores
`--config-settings`).

ggml asks the kernel for AMX (`arch_prctl(ARCH_REQ_XCOMP_PERM)`) before it offers its AMX
buffer type, and a refusal makes it say "AMX is not ready to be used!" and repack the
weights for its AVX-512 kernels instead. So this process installs a seccomp filter that
refuses exactly that request, and nothing else, before llama.cpp loads. Measured on a
2-core Xeon with AMX, 1.5B Q4, a follow-up turn: the first 10 tokens in 0.78 s, against
0.96 s with no repacking at all (`use_extra_bufts` off, llama.cpp's `--no-repack`), which
stays the fallback where a filter cannot be installed. Elsewhere nothing changes.
"""
from __future__ import annotations

import ctypes
import runpy
import struct
import sys
from pathlib import Path

# Linux ABI numbers (x86-64) for the one filter below
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_AUDIT_ARCH_X86_64, _NR_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM = 0xC000003E, 158, 0x1023
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | 1
_LD_W_ABS, _JEQ_K, _RET_K = 0x20, 0x15, 0x06  # classic BPF opcodes
# struct seccomp_data: int nr @0, u32 arch @4, u64 ip @8, u64 args[6] @16 (low word first)
_NR, _ARCH, _ARG0 = 0, 4, 16


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return "amx_tile" in flags.split()


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


# arch == x86-64 and nr == arch_prctl and arg0 == ARCH_REQ_XCOMP_PERM  ->  EPERM; else allow
REFUSE_AMX_PERMISSION = b"".join([
    _bpf(_LD_W_ABS, 0, 0, _ARCH), _bpf(_JEQ_K, 0, 5, _AUDIT_ARCH_X86_64),
    _bpf(_LD_W_ABS, 0, 0, _NR), _bpf(_JEQ_K, 0, 3, _NR_ARCH_PRCTL),
    _bpf(_LD_W_ABS, 0, 0, _ARG0), _bpf(_JEQ_K, 0, 1, _ARCH_REQ_XCOMP_PERM),
    _bpf(_RET_K, 0, 0, _RET_EPERM),
    _bpf(_RET_K, 0, 0, _RET_ALLOW),
])


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def refuse_amx_permission() -> bool:
    """Install the filter for this process and the threads it starts from now on; True if it took."""
    libc = ctypes.CDLL(None, use_errno=True)
    program = ctypes.create_string_buffer(REFUSE_AMX_PERMISSION, len(REFUSE_AMX_PERMISSION))
    fprog = _SockFprog(len(REFUSE_AMX_PERMISSION) // 8, ctypes.cast(program, ctypes.c_void_p))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # required to filter without root
        return False
    return libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0


def load_without_extra_buffer_types() -> None:
    import llama_cpp.llama_cpp as llama_cpp  # the ctypes binding that `Llama` asks for its defaults

    defaults = llama_cpp.llama_model_default_params

    def without_extra_bufts():
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_model_default_params = without_extra_bufts


if __name__ == "__main__":
    if cpu_has_amx() and not refuse_amx_permission():
        print("llama server: could not refuse AMX (seccomp), loading without repacked weights",
              file=sys.stderr)
        load_without_extra_buffer_types()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
