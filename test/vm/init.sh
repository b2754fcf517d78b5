#!/bin/busybox sh
# /init of the VM suite's initramfs (pid 1). It builds the root the job runs
# in: the host root, shared read-only over 9p (tag "host"), under an overlay
# whose upper layer is a tmpfs, so the job sees the host's binaries (go-built
# reconciler aside, containerd, runc, ctr) and can write anywhere without
# touching the host. The writable share (tag "job") is mounted at /vmjob.
# cgroup2 is mounted alone at /sys/fs/cgroup: a pure cgroup v2 host.
#
# Hazard: pid 1 must never exit (the kernel panics); every path ends in
# poweroff -f, which with qemu -no-reboot ends the VM.
/bin/busybox mkdir -p /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

fail() {
	echo "vm-init: $*"
	poweroff -f
	sleep 60
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do
	insmod "/lib/modules/$m" || echo "vm-init: insmod $m failed"
done

mkdir -p /host /ovl /newroot
# msize: the default 8 KiB makes reading 40 MB binaries over 9p crawl under
# emulation; cache=loose is safe on the read-only host share only.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose host /host || fail "mount host share"
mount -t tmpfs -o mode=0755 ovl /ovl
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work /newroot || fail "mount overlay root"
mkdir -p /newroot/vmjob
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 job /newroot/vmjob || fail "mount job share"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t cgroup2 -o nsdelegate cgroup2 /newroot/sys/fs/cgroup || fail "mount cgroup2"
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs shm /newroot/dev/shm
mount -t tmpfs -o mode=0755 run /newroot/run
mount -t tmpfs -o mode=1777 tmp /newroot/tmp
# The host's /etc/mtab and friends describe the host; the job only needs
# /proc/self/mounts.
ln -sf /proc/self/mounts /newroot/etc/mtab 2>/dev/null

echo "vm-init: running job (uptime $(cut -d' ' -f1 /proc/uptime) s)"
chroot /newroot /bin/sh /vmjob/job.sh
echo "vm-init: job exited with status $?"
sync
poweroff -f
sleep 60
