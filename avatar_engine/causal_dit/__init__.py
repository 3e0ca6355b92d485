"""causal_dit: the seed papers' block-causal few-step video diffusion avatar.

Modules, one job each:
    model.py      the transformer (patchify, 3-D RoPE, per-frame adaLN, self-attention over
                  a KV context, talk/listen audio cross-attention, audio adapter; Live
                  Avatar's text cross-attention, speech encoder, audio injector, FramePack
                  sink tokens); presets, incl. liveavatar-14b and liveavatar-tiny
    wan_keys.py   Wan2.2-S2V-14B / Live Avatar checkpoint keys → ours (strict=True);
                  config.json ↔ our DiTConfig
    lora.py       PEFT LoRA merge on load (Live Avatar: rank 128, alpha 64, 448 layers)
    liveavatar.py Live Avatar's streaming path: sink prefill, ring, rolling RoPE, timestep
                  forcing, flow-match Euler schedule, adaptive sink
    liveavatar_tpp.py  its pipeline parallelism: 1..steps step ranks + a VAE rank
    text_encoder.py    Wan's umT5-XXL via transformers, run once per persona
    prompt_cache.py    umT5 prompt states on disk, so no text encoder stays resident
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
    checkpoint.py safetensors checkpoints (weights + configs); load_liveavatar
    liveavatar_files.py  the published Live Avatar files and tensors, checked from headers
    preflight.py  Live Avatar's files, GPUs and memory, refused in one line before loading
    train.py      small-scale training on one clip (diffusion forcing, history corruption)
    synthetic.py  a synthetic talking clip for smoke training
    backend.py    the engine Backend: reset / render / flush over a checkpoint; the Live
                  Avatar directory through the preflight
    liveavatar_backend.py  the published Live Avatar model as that Backend, one process
"""
