#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rustimage::fuzzing::text_inputs(data);
});
