//! Kernel enforcement for imgsign: BPF-LSM programs written in C and their loader.
