"""The CPU real-time portrait backend: one photo, a landmark rig, an exact mesh warp.

    rig.py     landmarks → mesh, expression blendshapes, head ring
    warp.py    exact piecewise-affine inverse warp of the head region
    mouth.py   the mouth's inside: teeth that move with skull and jaw, cavity, tongue
    motion.py  features → per-frame pose (visemes, nods, blinks, sway), deterministic
    backend.py PortraitBackend, the Backend the runtime drives
"""
