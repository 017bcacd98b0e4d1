# Stand-in for OE-core's base class in meta-rustimage's tests (written for
# the tests, no OE-core code): the shell logging functions tasks call and
# the build task.

bbplain() {
	echo "$*"
}
bbnote() {
	echo "NOTE: $*"
}
bbwarn() {
	echo "WARNING: $*"
}
bbfatal() {
	echo "ERROR: $*"
	exit 1
}

do_build[noexec] = "1"
addtask build
