#![doc = include_str!("../README.md")]

#[cfg(feature = "testing")]
pub mod testing;
