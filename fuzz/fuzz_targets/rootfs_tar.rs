#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = rustimage::fuzzing::rootfs_tar(data);
});
