//! Sockets, I/O threads, channels and callback dispatch: the only code that does I/O.
