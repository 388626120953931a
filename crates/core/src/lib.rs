//! vigil-core: the supervision tree that runs programs.
