//! Black-box test harness for vigild and vigilctl.
