#!/usr/bin/env bash
# make demo: converge examples/hello on this machine and prove it serves.
# make demo-clean (this script with "clean"): prune it and stop what we started.
#
# Everything the demo creates lives in .demo/ (state, logs, image archive, a
# private containerd when the host has none) and under the cgroup /kukeon.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO="$PWD/.demo"
SOCK_DEFAULT=/run/containerd/containerd.sock
BIN="$PWD/bin/reconciler"
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	echo "make demo needs root (containerd and cgroups)." >&2
	exit 1
fi

address() {
	if [ -f "$DEMO/containerd.address" ]; then cat "$DEMO/containerd.address"; else echo "$SOCK_DEFAULT"; fi
}

answers() { ctr -a "$1" version >/dev/null 2>&1; }

if [ "${1:-}" = clean ]; then
	if [ -x "$BIN" ] && [ -d "$DEMO/state" ]; then
		say "pruning everything the demo created"
		mkdir -p "$DEMO/empty"
		"$BIN" --once --manifests "$DEMO/empty" --allow-empty --containerd-address "$(address)" \
			--state-dir "$DEMO/state" || true
	fi
	if [ -f "$DEMO/containerd.pid" ]; then
		pid=$(cat "$DEMO/containerd.pid")
		say "stopping the private containerd (pid $pid)"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		grep " $DEMO/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
	fi
	# runc leaves the empty parents of container cgroups in the v1 hierarchies
	# of hybrid hosts; rmdir only removes empty directories.
	for d in /sys/fs/cgroup/*/kukeon /sys/fs/cgroup/kukeon; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
	rm -rf "$DEMO"
	say "clean"
	exit 0
fi

need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

mkdir -p "$DEMO/images" "$DEMO/state"
if answers "$SOCK_DEFAULT"; then
	ADDR=$SOCK_DEFAULT
	say "using the containerd at $ADDR"
elif [ -f "$DEMO/containerd.address" ] && answers "$(cat "$DEMO/containerd.address")"; then
	ADDR=$(cat "$DEMO/containerd.address")
	say "using the demo's containerd at $ADDR"
else
	ADDR="$DEMO/run/containerd.sock"
	say "no containerd answers at $SOCK_DEFAULT: starting a private one at $ADDR"
	mkdir -p "$DEMO/run" "$DEMO/root" "$DEMO/state-ctd"
	cat >"$DEMO/containerd.toml" <<TOML
version = 2
root = "$DEMO/root"
state = "$DEMO/state-ctd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ADDR"
[ttrpc]
  address = "$ADDR.ttrpc"
TOML
	nohup containerd --config "$DEMO/containerd.toml" >"$DEMO/containerd.log" 2>&1 &
	echo $! >"$DEMO/containerd.pid"
	echo "$ADDR" >"$DEMO/containerd.address"
	for _ in $(seq 100); do answers "$ADDR" && break; sleep 0.1; done
	answers "$ADDR" || { tail -20 "$DEMO/containerd.log"; exit 1; }
fi

say "building the busybox test image (no registry needed)"
./bin/testimage -o "$DEMO/images/busybox.tar"

say "validating examples/hello"
"$BIN" validate examples/hello

say "reconciler --once --dry-run (exit code 2 = changes to make)"
set +e
"$BIN" --once --dry-run --manifests examples/hello --containerd-address "$ADDR" --state-dir "$DEMO/state" \
	--image-archives "$DEMO/images"
echo "exit code $?"
set -e

say "reconciler --once"
"$BIN" --once --manifests examples/hello --containerd-address "$ADDR" --state-dir "$DEMO/state" \
	--image-archives "$DEMO/images"

say "curl http://127.0.0.1:8080/"
for _ in $(seq 50); do curl -fsS http://127.0.0.1:8080/ && break; sleep 0.1; done

say "reconciler status"
"$BIN" status --state-dir "$DEMO/state"

say "a second pass changes nothing"
"$BIN" --once --manifests examples/hello --containerd-address "$ADDR" --state-dir "$DEMO/state" \
	--image-archives "$DEMO/images"

cat <<MSG

The cell keeps running. To undo everything the demo did:
  make demo-clean
MSG
