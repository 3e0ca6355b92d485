"""Audio in and out: formats, VAD, speaker turns, ASR, TTS, local devices."""
