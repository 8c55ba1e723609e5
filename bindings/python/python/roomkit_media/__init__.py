"""roomkit-media for roomkit: roomkit's RTP and SIP backends on a native engine.

``roomkit_media.backends`` holds the drop-in classes; ``roomkit_media._native``
is the compiled engine binding they call.
"""

from roomkit_media.backends import (
    RTPVideoBackend,
    RTPVoiceBackend,
    SIPVideoBackend,
    SIPVoiceBackend,
)

__all__ = ["RTPVideoBackend", "RTPVoiceBackend", "SIPVideoBackend", "SIPVoiceBackend"]
__version__ = "0.1.0"
