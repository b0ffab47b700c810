#!/bin/sh
# /init of the heads payload (PID 1).  Port of the first lines of Heads' initrd/init: mount the
# kernel file systems, then hand over to the Python boot runtime.  Everything that decides
# anything (measuring, attesting, verifying, kexec) happens in `python3 -m heads.runtime`; this
# script only stays PID 1 so a crashed runtime cannot panic the kernel.
#
# The runtime's exit status says what to do next: 10 = recovery shell (PCR 4 already extended
# with "recovery"), 11 = power off.  kexec never returns.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
echo "heads: init"
mkdir -p /proc /sys /dev /run /tmp /boot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p /dev/pts /run/heads
# devtmpfs has no /dev/fd: cryptsetup reads keys from /dev/fd/N (a pipe, never a file).
ln -sf /proc/self/fd /dev/fd
mount -t devpts devpts /dev/pts 2>/dev/null

# The interpreter's layout is decided by the payload builder; it may leave its settings here.
if [ -r /etc/heads/python.env ]; then
    . /etc/heads/python.env
fi
export PYTHONHOME="${PYTHONHOME:-/usr}"
export PYTHONPATH="${PYTHONPATH:-/usr/lib/python3/heads-site}"
export PYTHONDONTWRITEBYTECODE=1
export PYTHONUNBUFFERED=1
export HEADS_TCTI="${HEADS_TCTI:-device:/dev/tpmrm0}"

python3 -m heads.runtime
rc=$?
case "$rc" in
    10)
        echo "heads: recovery shell (type 'poweroff -f' to power off)"
        while true; do
            setsid cttyhack sh -l || sh
        done
        ;;
    11)
        echo "heads: powering off"
        ;;
    *)
        # The runtime failed before deciding: no TOTP, no kexec.  Don't offer an unmeasured
        # shell; power off instead.
        echo "heads: the boot runtime stopped unexpectedly (status $rc); powering off"
        ;;
esac
sync
poweroff -f
