//! vigil-rpc: the control service shared by vigild and vigilctl.
