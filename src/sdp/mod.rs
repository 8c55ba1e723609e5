//! SDP offer/answer (RFC 3264). Pure.
