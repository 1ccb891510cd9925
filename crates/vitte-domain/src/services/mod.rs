//! Domain services: the pieces of the reply pipeline that need no I/O
//! (safety, intimacy, prompt assembly, text shaping), each testable alone.
