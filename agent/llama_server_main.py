"""The process `LocalLLMServer` starts: `python -m llama_cpp.server`, with AMX kept out.

    python agent/llama_server_main.py --model m.gguf --port 8080 ...   (llama_cpp.server's flags)

On a CPU with AMX (Intel Xeon since Sapphire Rapids), llama.cpp 0.3.36 built natively puts
the weights in its AMX buffer type, and the first prompt longer than one token dies of
SIGSEGV in `ggml_backend_amx_mul_mat`. The wheel pip builds and caches cannot be told
otherwise after the fact (pip's wheel cache ignores `--config-settings`), so the model is
loaded without the "extra" buffer types instead (`use_extra_bufts`, llama.cpp's
`--no-repack`). Measured on a 2-core Xeon with AMX, 1.5B Q4: 200 prompt tokens in 1.3 s,
12 tokens/s, no crash. Elsewhere nothing changes: the repacked weights are faster there.
"""
from __future__ import annotations

import runpy
from pathlib import Path


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return "amx_tile" in flags.split()


def load_without_extra_buffer_types() -> None:
    import llama_cpp.llama_cpp as llama_cpp  # the ctypes binding that `Llama` asks for its defaults

    defaults = llama_cpp.llama_model_default_params

    def without_extra_bufts():
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama_model_default_params = without_extra_bufts


if __name__ == "__main__":
    if cpu_has_amx():
        load_without_extra_buffer_types()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
