#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rustimage::fuzzing::text_inputs(data));
