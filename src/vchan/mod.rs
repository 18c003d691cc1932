//! vchan (libxenvchan) client: ring arithmetic and the byte-stream service (to be filled in).
