"""Booth-mode audio devices: a clear error where the machine has none."""
import pytest

from speech.devices import Microphone, NoAudioDevice, Speaker


def has_device(kind):
    try:
        import sounddevice as sd
        sd.query_devices(kind=kind)
        return True
    except Exception:
        return False


@pytest.mark.parametrize("cls, kind", [(Microphone, "input"), (Speaker, "output")])
def test_device_opens_or_says_clearly_why_not(cls, kind):
    if has_device(kind):
        with cls(16000) as dev:
            assert dev.sample_rate == 16000
    else:
        with pytest.raises(NoAudioDevice) as e:
            cls(16000)
        msg = str(e.value)
        assert "\n" not in msg and ("--headless" in msg or "web UI" in msg)
