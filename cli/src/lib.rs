//! The command line's commands, as a library so that each binary stays a thin shell: `imgsign`
//! (every command, parsed by clap) and `imgsign-hook` (the OCI hooks alone, which an engine
//! starts once or twice per container: a small executable starts much faster, most of all
//! under emulation, where each page the loader touches costs).

pub mod commands;
pub mod output;
