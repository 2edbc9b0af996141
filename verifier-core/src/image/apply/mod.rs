//! The two appliers plugged into the layer rules ([`crate::image::tree`]): [`hash`] only hashes
//! file content (sign, verify), [`unpack`] writes the flattened image into a directory while
//! hashing (the unpacker `imgsign run` uses). Both yield the same manifest for the same image.

pub mod hash;
pub mod unpack;
