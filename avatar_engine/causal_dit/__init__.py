"""causal_dit: the seed papers' block-causal few-step video diffusion avatar.

Modules, one job each:
    model.py      the transformer (patchify, 3-D RoPE, per-frame adaLN, self-attention over
                  a KV context, talk/listen audio cross-attention, audio adapter); presets
    positions.py  RoPE time positions per block: absolute, RAPR (cap D), rolling
    cache.py      sink + rolling-window KV cache of un-rotated keys; the streaming context
    sequence.py   the block-causal whole-sequence context (training; reference in tests)
    sampler.py    shifted flow-matching schedule, Euler / x0-and-renoise steps, seeded noise
    stream.py     block-by-block generation: timestep forcing or clean refresh, adaptive sink
    tpp.py        timestep-forcing pipeline parallelism over torch.distributed
    vae.py        small streaming causal video VAE (feature cache across calls)
    wan_vae.py    Live Avatar's Wan2.1 VAE (diffusers) from Wan2.1_VAE.pth, decoding as a stream
    audio.py      speech encoders (Whisper via CTranslate2, wav2vec2), incremental features,
                  talk/listen mask → gates
    wav2vec_features.py  Live Avatar's wav2vec2 front end: 25 layers at 25 fps, as the reference
    sizing.py     parameters, KV bytes and FLOPs of any preset on the meta device; the
                  per-rank memory plan of the published Live Avatar model under TPP
    checkpoint.py safetensors checkpoints (weights + configs)
    liveavatar_files.py  the published Live Avatar files and tensors, checked from headers
    preflight.py  Live Avatar's files, GPUs and memory, refused in one line before loading
    train.py      small-scale training on one clip (diffusion forcing, history corruption)
    synthetic.py  a synthetic talking clip for smoke training
    backend.py    the engine Backend: reset / render / flush over a checkpoint
"""
