//! The RTP and SIP voice/video backends.
