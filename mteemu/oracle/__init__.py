"""The Linux oracle: programs run under Debian's arm64 kernel with MTE, in
qemu-system-aarch64 (issue 25). fetch.py gets the machine, runner.py runs batches, init.c
is the guest's PID 1."""
