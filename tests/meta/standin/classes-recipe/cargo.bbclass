# Stand-in for OE-core's cargo class (tests only): the variables a cargo
# recipe relies on, so that rustimage's recipe parses. Nothing is built.
CARGO_SRC_DIR ??= ""
CARGO_MANIFEST_PATH ??= "${S}/${CARGO_SRC_DIR}/Cargo.toml"
B = "${WORKDIR}/build"

do_compile[noexec] = "1"
do_install[noexec] = "1"
do_populate_sysroot[noexec] = "1"
addtask compile
addtask install after do_compile
addtask populate_sysroot after do_install before do_build
