# Stand-in for OE-core's cargo-update-recipe-crates class (tests only).
# scripts/update-crates-inc writes what the real do_update_crates writes.
CARGO_LOCK_SRC_DIR ??= "${S}"
do_update_crates[noexec] = "1"
do_update_crates[nostamp] = "1"
addtask update_crates
