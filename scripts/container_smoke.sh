#!/usr/bin/env bash
# Build docker/Dockerfile with podman on a Debian base made by debootstrap, then smoke-test the image:
# size, --version, usage errors (same message and exit code as outside), the demo participant with
# --network none --read-only (tmpfs /tmp) and a non-root --user, the group level, and the output tree.
#
#   scripts/container_smoke.sh            # all steps (needs root: apt-get, debootstrap, podman)
#   scripts/container_smoke.sh build      # base + image only
#   scripts/container_smoke.sh test       # smoke-test an image built before
#
# Environment: SMOKE_DIR (default /var/tmp/tumsyn-smoke: debootstrap root, data, outputs),
# IMAGE (default localhost/tumsyn-bids:smoke), BASE (default localhost/tumsyn-base:bookworm),
# TORCH_WHEELS (folder holding a CPU torch wheel, default /opt/wheels; mounted into the build),
# DEMO (BIDS dataset for the participant run, default bids_examples/demo; mounted at /data),
# DEMO_ARGS (its options), HOST_APP (the host's tumsyn-bids for the usage comparison).
# Nothing is written inside the repository.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SMOKE_DIR=${SMOKE_DIR:-/var/tmp/tumsyn-smoke}
IMAGE=${IMAGE:-localhost/tumsyn-bids:smoke}
BASE=${BASE:-localhost/tumsyn-base:bookworm}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
DEMO=${DEMO:-$REPO/bids_examples/demo}
DEMO_ARGS=${DEMO_ARGS:---target T2w --voxel 1 1 1}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# The host's tumsyn-bids, to compare messages and exit codes with (PATH first, then the repo venv).
HOST_APP=${HOST_APP:-$(command -v tumsyn-bids || echo "$REPO/.venv/bin/tumsyn-bids")}
PODMAN=(podman --runtime runc --cgroup-manager cgroupfs)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
USER_ID=4242:4242 # an arbitrary non-root UID:GID that exists nowhere in the image
# The run-time sandbox every smoke run uses: no network, read-only root, tmpfs /tmp, non-root user.
SANDBOX=(--rm --network none --read-only --tmpfs "/tmp:rw,exec,size=2g" --user "$USER_ID" "${LIMITS[@]}")

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'SMOKE FAIL: %s\n' "$*" >&2; exit 1; }

install_tools() {
    command -v podman >/dev/null && command -v debootstrap >/dev/null && command -v runc >/dev/null && return
    step "installing podman, runc, debootstrap from Debian"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap uidmap tree >/dev/null
}

make_base() {
    if "${PODMAN[@]}" image exists "$BASE"; then
        step "base image $BASE exists"
        return
    fi
    step "debootstrap bookworm minbase -> $BASE"
    local root="$SMOKE_DIR/rootfs"
    rm -rf "$root"
    mkdir -p "$SMOKE_DIR"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$root" "$DEBIAN_MIRROR" >"$SMOKE_DIR/debootstrap.log" 2>&1 ||
        fail "debootstrap failed, see $SMOKE_DIR/debootstrap.log"
    # pip inside the build trusts what the host trusts (the registry may sit behind a TLS proxy).
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | "${PODMAN[@]}" import - "$BASE" >/dev/null
}

build_image() {
    local wheel_args=() torch_args=()
    if compgen -G "$TORCH_WHEELS/torch-*+cpu-*.whl" >/dev/null; then
        # Offline-friendly CPU torch: the local wheel, mounted into the RUN steps only.
        local wheel
        wheel=$(basename "$(compgen -G "$TORCH_WHEELS/torch-*+cpu-*.whl" | head -n1)")
        local version=${wheel#torch-}
        version=${version%%-*}
        wheel_args=(-v "$TORCH_WHEELS:/wheels:ro")
        torch_args=(--build-arg WHEELS_DIR=/wheels --build-arg TORCH_INDEX_URL= --build-arg "TORCH_REQUIREMENT=torch==$version")
    else
        torch_args=(--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu)
    fi
    local version vcs_ref
    version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$REPO/tumsyn_bids/__init__.py")
    vcs_ref=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    step "podman build $IMAGE (version $version, vcs-ref $vcs_ref)"
    local start=$SECONDS
    "${PODMAN[@]}" build --format docker "${LIMITS[@]}" "${wheel_args[@]}" \
        --build-arg BASE_IMAGE="$BASE" "${torch_args[@]}" \
        --build-arg FETCH_TEMPLATES=0 --build-arg FETCH_WEIGHTS=0 \
        --build-arg VERSION="$version" --build-arg VCS_REF="$vcs_ref" \
        --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        --build-arg CONTAINER_TAG="$IMAGE" \
        -f "$REPO/docker/Dockerfile" -t "$IMAGE" "$REPO" >"$SMOKE_DIR/build.log" 2>&1 ||
        { tail -n 40 "$SMOKE_DIR/build.log"; fail "podman build failed, see $SMOKE_DIR/build.log"; }
    echo "built in $((SECONDS - start)) s"
}

# Run a command on the host and in the container; both must give the same exit code and the
# same last stderr line. Paths are bind-mounted at the same place, so messages match verbatim.
compare_usage() {
    local label=$1
    shift
    local host_rc=0 ctr_rc=0 host_err ctr_err
    host_err=$(cd "$SMOKE_DIR" && "$HOST_APP" "$@" 2>&1 >/dev/null | tail -n1) || true
    (cd "$SMOKE_DIR" && "$HOST_APP" "$@" >/dev/null 2>&1) || host_rc=$?
    ctr_err=$("${PODMAN[@]}" run "${SANDBOX[@]}" -v "$SMOKE_DIR/data:$SMOKE_DIR/data:ro" \
        -w "$SMOKE_DIR" "$IMAGE" "$@" 2>&1 >/dev/null | tail -n1) || true
    "${PODMAN[@]}" run "${SANDBOX[@]}" -v "$SMOKE_DIR/data:$SMOKE_DIR/data:ro" -w "$SMOKE_DIR" \
        "$IMAGE" "$@" >/dev/null 2>&1 || ctr_rc=$?
    printf '%-28s host rc=%-3s container rc=%-3s | %s\n' "$label" "$host_rc" "$ctr_rc" "$ctr_err"
    [[ $host_rc == "$ctr_rc" ]] || fail "$label: exit code differs (host $host_rc, container $ctr_rc)"
    [[ $host_rc != 0 ]] || fail "$label: wrong usage exited 0"
    [[ $host_err == "$ctr_err" ]] || fail "$label: message differs: host '$host_err' vs container '$ctr_err'"
}

smoke_test() {
    "${PODMAN[@]}" image exists "$IMAGE" || fail "no image $IMAGE: run '$0 build' first"
    mkdir -p "$SMOKE_DIR/data"

    step "image size"
    local size
    size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
    echo "$IMAGE: $((size / 1024 / 1024)) MiB"
    "${PODMAN[@]}" image inspect --format \
        'version={{index .Labels "org.opencontainers.image.version"}} revision={{index .Labels "org.opencontainers.image.revision"}} user={{.Config.User}} entrypoint={{.Config.Entrypoint}} workdir={{.Config.WorkingDir}}' \
        "$IMAGE"

    step "--version (sandboxed: --network none --read-only --user $USER_ID)"
    local ctr_version host_version
    ctr_version=$("${PODMAN[@]}" run "${SANDBOX[@]}" "$IMAGE" --version)
    echo "container: $ctr_version"
    if [[ -x $HOST_APP ]]; then
        host_version=$("$HOST_APP" --version)
        echo "host:      $host_version"
        [[ $ctr_version == "$host_version" ]] || fail "--version differs from the host's"
    fi

    step "--network none is in force (a connection attempt fails inside)"
    "${PODMAN[@]}" run "${SANDBOX[@]}" --entrypoint /opt/venv/bin/python "$IMAGE" -c '
import socket
try:
    socket.create_connection(("1.1.1.1", 443), timeout=3)
except OSError as exc:
    print("network unreachable as expected:", type(exc).__name__)
else:
    raise SystemExit("network reachable inside --network none")'

    step "baked in: weights that ship in wheels, TemplateFlow home, thread settings"
    "${PODMAN[@]}" run "${SANDBOX[@]}" --entrypoint /opt/venv/bin/python "$IMAGE" -c '
import os, pathlib, tumsyn_bids
from deepbet.bet import DATA_PATH  # deepbet ships its TorchScript weights as wheel data files
deepbet = sorted(p.name for p in pathlib.Path(DATA_PATH, "models").glob("*.pt"))
print("deepbet weights:", deepbet, "in", DATA_PATH)
bundled = sorted(p.name for p in pathlib.Path(tumsyn_bids.__file__).parent.joinpath("data").rglob("*.pt"))
print("tumsyn_bids bundled weights:", bundled or "none yet")
home = pathlib.Path(os.environ["TEMPLATEFLOW_HOME"])
print("TEMPLATEFLOW_HOME:", home, len(list(home.glob("tpl-*"))), "templates,", sum(1 for p in home.rglob("*.nii.gz") if p.stat().st_size), "NIfTI files with content")
print("OMP_NUM_THREADS:", os.environ["OMP_NUM_THREADS"], "HOME mode:", oct(os.stat(os.environ["HOME"]).st_mode & 0o777))
assert "model.pt" in deepbet, "deepbet weights missing"'

    step "wrong usage: same errors and exit codes inside and outside"
    if [[ -x $HOST_APP ]]; then
        mkdir -p "$SMOKE_DIR/data/not_bids"
        compare_usage "missing analysis level" "$SMOKE_DIR/data/not_bids" "$SMOKE_DIR/out"
        compare_usage "bad analysis level" "$SMOKE_DIR/data/not_bids" "$SMOKE_DIR/out" sideways
        compare_usage "missing bids_dir" "$SMOKE_DIR/data/absent" "$SMOKE_DIR/out" participant
        compare_usage "unknown option" "$SMOKE_DIR/data/not_bids" "$SMOKE_DIR/out" participant --no-such-flag
    else
        echo "tumsyn-bids not installed on the host: comparison skipped"
    fi

    if [[ ! -d $DEMO ]]; then
        echo "demo dataset $DEMO absent: participant run skipped"
        return
    fi
    step "demo participant: $(basename "$DEMO") $DEMO_ARGS"
    local out="$SMOKE_DIR/out" work="$SMOKE_DIR/work"
    rm -rf "$out" "$work"
    mkdir -p "$out" "$work"
    chown "$USER_ID" "$out" "$work"
    local start=$SECONDS
    # shellcheck disable=SC2086 # DEMO_ARGS is a list of options
    "${PODMAN[@]}" run "${SANDBOX[@]}" -v "$DEMO:/data:ro" -v "$out:/out" -v "$work:/work" \
        "$IMAGE" /data /out participant $DEMO_ARGS -w /work ||
        fail "participant run failed (exit $?)"
    echo "participant level took $((SECONDS - start)) s inside the container"
    start=$SECONDS
    "${PODMAN[@]}" run "${SANDBOX[@]}" -v "$DEMO:/data:ro" -v "$out:/out" "$IMAGE" /data /out group ||
        fail "group run failed (exit $?)"
    echo "group level took $((SECONDS - start)) s"

    step "output tree"
    (cd "$out" && find . -type f | sort)
    compgen -G "$out/sub-*/anat/*_desc-tumsyn_*.nii.gz" >/dev/null ||
        compgen -G "$out/sub-*/ses-*/anat/*_desc-tumsyn_*.nii.gz" >/dev/null ||
        fail "no synthesized image in $out"
    [[ -f $out/dataset_description.json ]] || fail "no dataset_description.json"
    python3 - "$out/dataset_description.json" "$IMAGE" <<'EOF'
import json, sys
desc = json.load(open(sys.argv[1]))
containers = [g.get("Container", {}) for g in desc.get("GeneratedBy", [])]
print("GeneratedBy.Container:", containers)
assert any(sys.argv[2] in json.dumps(c) for c in containers), "image tag missing from GeneratedBy.Container"
EOF
    local owners
    owners=$(find "$out" -printf '%U:%G\n' | sort -u | tr '\n' ' ')
    echo "output files owned by: $owners"
}

main() {
    local what=${1:-all}
    mkdir -p "$SMOKE_DIR"
    case $what in
    build)
        install_tools
        make_base
        build_image
        ;;
    test) smoke_test ;;
    all)
        install_tools
        make_base
        build_image
        smoke_test
        ;;
    *) fail "usage: $0 [all|build|test]" ;;
    esac
    echo
    echo "SMOKE OK ($what)"
}

main "$@"
