#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustimage::fuzzing::image_layout(data));
