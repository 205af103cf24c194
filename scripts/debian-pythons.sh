#!/usr/bin/env bash
# The test suite on CPython 3.14 and 3.15, taken from Debian unstable (sid) in a chroot.
#
#   scripts/debian-pythons.sh setup                        build or update the chroot (once per machine)
#   scripts/debian-pythons.sh test 3.14 [pytest args...]   run the suite on one version (runs setup first)
#   scripts/debian-pythons.sh run 3.14 [python args...]    run that version's python in the checkout (a benchmark, say)
#
# Needs root (debootstrap, mount, chroot) on a Debian-like host with apt.  The chroot lives outside
# the checkout, in ${AUTOPAR_CHROOT:-/var/cache/autopar/sid}, and is reused between runs; the
# checkout is bind-mounted at /src inside it and each version gets its own venv at /opt/venv-X.Y.
# The script runs in a private mount namespace, so its mounts vanish when it exits, however it
# exits, and runs side by side never see each other's mounts; it also unmounts them itself.
#
# Environment:
#   AUTOPAR_CHROOT          chroot directory (default /var/cache/autopar/sid)
#   AUTOPAR_DEBIAN_MIRROR   Debian mirror (default: the host of the first Debian mirror in the host's apt sources)
#   AUTOPAR_TEST_TIMEOUT    overall limit of one pytest run, as for timeout(1) (default 40m)
#   AUTOPAR_RERUN_FAILED    when set, tests that failed run once more, alone, and decide the outcome
set -euo pipefail

ROOT=${AUTOPAR_CHROOT:-/var/cache/autopar/sid}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSIONS=(3.14 3.15)
TEST_TIMEOUT=${AUTOPAR_TEST_TIMEOUT:-40m}

say() { printf '[debian-pythons] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, mount and chroot)"

# Re-run in a private mount namespace: every mount below disappears with this process.
if [[ -z ${_AUTOPAR_UNSHARED:-} ]]; then
    command -v unshare >/dev/null || die "unshare (util-linux) is missing"
    _AUTOPAR_UNSHARED=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

# --- mounts -----------------------------------------------------------------------------------------

MOUNTED=()          # mount points, in the order they were mounted
RUN_TOKEN="autopar-run-$$-$(date +%s%N)"   # marks the processes of this run (their environment)

mount_into_root() {  # mount_into_root TARGET MOUNT-ARGS...
    local target=$ROOT$1
    shift
    mkdir -p "$target"
    mount "$@" "$target"
    MOUNTED+=("$target")
}

mount_all() {
    [[ ${#MOUNTED[@]} -eq 0 ]] || return 0
    mount_into_root /proc -t proc proc
    mount_into_root /sys --bind /sys
    mount -o remount,bind,ro "$ROOT/sys"
    mount_into_root /dev --bind /dev
    mount_into_root /dev/pts --bind /dev/pts
    mountpoint -q /dev/shm && mount_into_root /dev/shm --bind /dev/shm
    mount_into_root /src --bind "$SRC"
}

# Processes whose root directory is the chroot.  With "ours", only those of this run.
chroot_pids() {
    local p pid
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [[ $pid == "$$" ]] && continue
        [[ $(readlink "$p/root" 2>/dev/null) == "$ROOT" ]] || continue
        if [[ ${1:-} == ours ]]; then
            tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx "AUTOPAR_RUN=$RUN_TOKEN" || continue
        fi
        echo "$pid"
    done
}

kill_leftovers() {
    local pids
    pids=$(chroot_pids ours)
    if [[ -n $pids ]]; then
        say "processes of this run left in the chroot, killing them:"
        # shellcheck disable=SC2086
        ps -o pid=,ppid=,stat=,etime=,args= -p "$(echo $pids | tr ' ' ',')" >&2 || true
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        sleep 2
        pids=$(chroot_pids ours)
        # shellcheck disable=SC2086
        [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
    fi
    pids=$(chroot_pids)
    if [[ -n $pids ]]; then
        say "other processes in the chroot (not of this run, left alone): $(echo $pids)"
    fi
}

TEST_PID=

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [[ -n $TEST_PID ]] && kill -0 "$TEST_PID" 2>/dev/null; then
        say "stopping the test run"
        kill -TERM "$TEST_PID" 2>/dev/null || true   # timeout passes it on to pytest's process group
        local i
        for ((i = 0; i < 10; i++)); do kill -0 "$TEST_PID" 2>/dev/null || break; sleep 1; done
        kill -KILL "$TEST_PID" 2>/dev/null || true
    fi
    kill_leftovers
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || say "could not unmount ${MOUNTED[i]}"
    done
    MOUNTED=()
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Run a command inside the chroot, with a clean environment.
in_root() {
    local env=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "TERM=${TERM:-dumb}"
        "AUTOPAR_RUN=$RUN_TOKEN")
    local var
    for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
        PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK \
        CI FORCE_COLOR NO_COLOR COLUMNS; do
        [[ -n ${!var:-} ]] && env+=("$var=${!var}")
    done
    env -i "${env[@]}" chroot "$ROOT" "$@"
}

# Serialise setup and venv creation between concurrent runs (the test runs themselves do not wait).
lock() {
    mkdir -p "$(dirname "$ROOT")"
    exec 9>"$ROOT.lock"
    flock 9
}
unlock() { flock -u 9; }

# --- setup ------------------------------------------------------------------------------------------

debian_mirror() {
    if [[ -n ${AUTOPAR_DEBIAN_MIRROR:-} ]]; then
        echo "$AUTOPAR_DEBIAN_MIRROR"
        return
    fi
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -v '^[[:space:]]*#' | grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -n1 | tr -d '[:space:]')
    [[ -n $uri ]] || uri=http://deb.debian.org/debian
    # apt of a minimal chroot has no CA certificates: plain http (apt checks the signatures).
    echo "http://${uri#*://}" | sed 's:/*$::'
}

PACKAGES=()
for v in "${VERSIONS[@]}"; do
    PACKAGES+=("python$v" "python$v-venv" "python$v-dev" "libpython$v-testsuite")
done

copy_host_config() {
    # DNS, and pip's configuration with the CA bundle it names, so that pip inside works as on the host.
    install -D -m 644 /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    local f cert
    local certs=(/etc/ssl/certs/ca-certificates.crt)
    for f in /etc/pip.conf /etc/xdg/pip/*; do
        [[ -f $f ]] || continue
        install -D -m 644 "$f" "$ROOT$f"
        while read -r cert; do certs+=("$cert"); done < <(sed -nE 's/^[[:space:]]*cert[[:space:]]*=[[:space:]]*(.+[^[:space:]])[[:space:]]*$/\1/p' "$f")
    done
    [[ -n ${PIP_CERT:-} ]] && certs+=("$PIP_CERT")
    for cert in "${certs[@]}"; do
        [[ -f $cert ]] && ! cmp -s "$cert" "$ROOT$cert" && install -D -m 644 "$cert" "$ROOT$cert"
    done
    return 0
}

setup() {
    lock
    if [[ ! -x $ROOT/usr/bin/apt-get || ! -e $ROOT/.autopar-debootstrap-done ]]; then
        if ! command -v debootstrap >/dev/null; then
            say "installing debootstrap on the host"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        fi
        local mirror
        mirror=$(debian_mirror)
        if [[ -e $ROOT ]]; then
            say "removing the incomplete chroot $ROOT"
            rm -rf --one-file-system "$ROOT"
        fi
        say "debootstrap sid from $mirror into $ROOT (a few minutes)"
        mkdir -p "$ROOT"
        debootstrap --variant=minbase sid "$ROOT" "$mirror" >"$ROOT.debootstrap.log" 2>&1 ||
            { tail -n 30 "$ROOT.debootstrap.log" >&2; die "debootstrap failed (log: $ROOT.debootstrap.log)"; }
        echo "deb $mirror sid main" >"$ROOT/etc/apt/sources.list"
        # No docs, man pages or locales in the chroot.
        printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-exclude /usr/share/man/*' 'path-exclude /usr/share/locale/*' \
            >"$ROOT/etc/dpkg/dpkg.cfg.d/01-nodoc"
        touch "$ROOT/.autopar-debootstrap-done"
    fi
    # A mirror may serve a frozen copy of sid whose Release file is past its Valid-Until date;
    # apt still checks the signatures.
    echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99autopar-valid-until"
    copy_host_config
    mount_all
    if ! in_root dpkg-query -W "${PACKAGES[@]}" >/dev/null 2>&1; then
        say "installing the Pythons in the chroot"
        in_root apt-get update -qq
        local pkg wanted=()
        for pkg in "${PACKAGES[@]}"; do
            if [[ -n $(in_root apt-cache search --names-only "^${pkg//./\\.}\$") ]]; then
                wanted+=("$pkg")
            else
                say "Debian sid has no package $pkg: skipped"
            fi
        done
        in_root apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
        in_root apt-get clean
        copy_host_config   # in case a package replaced the CA bundle
    fi
    unlock
}

# --- venvs ------------------------------------------------------------------------------------------

# The test extra's requirements, read from pyproject.toml by the chroot's Python.
test_requirements() {
    in_root "python$1" -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"]))'
}

make_venv() {  # make_venv VERSION
    local v=$1 venv=/opt/venv-$1
    local stamp
    stamp=$(sha256sum "$SRC/pyproject.toml" | cut -d' ' -f1)
    [[ $(cat "$ROOT$venv/.autopar-installed" 2>/dev/null) == "$stamp" ]] && return 0
    lock
    if [[ $(cat "$ROOT$venv/.autopar-installed" 2>/dev/null) != "$stamp" ]]; then
        in_root "python$v" -c pass 2>/dev/null || die "python$v is not installed in the chroot"
        say "creating $venv and installing autopar with its test extra"
        [[ -x $ROOT$venv/bin/python ]] || in_root "python$v" -m venv "$venv"
        in_root "$venv/bin/python" -m pip install -q --upgrade pip
        local log=$venv/install.log missing=()
        : >"$ROOT$log"
        # An editable install through hatchling writes nothing into the checkout (a .pth file in the venv).
        if ! in_root "$venv/bin/python" -m pip install -q --prefer-binary -e '/src[test]' >>"$ROOT$log" 2>&1; then
            say "the full test extra does not install on $v; installing its packages one by one"
            in_root "$venv/bin/python" -m pip install -q -e /src >>"$ROOT$log" 2>&1 ||
                { tail -n 30 "$ROOT$log" >&2; die "autopar itself does not install on $v"; }
            local req
            while read -r req; do
                [[ -n $req ]] || continue
                echo "### $req" >>"$ROOT$log"
                in_root "$venv/bin/python" -m pip install -q --prefer-binary "$req" >>"$ROOT$log" 2>&1 || missing+=("$req")
            done < <(test_requirements "$v")
        fi
        printf '%s\n' "${missing[@]}" | sed '/^$/d' >"$ROOT$venv/.autopar-missing"
        echo "$stamp" >"$ROOT$venv/.autopar-installed"
    fi
    unlock
}

# --- commands ---------------------------------------------------------------------------------------

cmd_setup() {
    local started=$SECONDS
    setup
    say "chroot ready in $((SECONDS - started)) s: $(du -sh --one-file-system "$ROOT" 2>/dev/null | cut -f1) in $ROOT"
    local v
    for v in "${VERSIONS[@]}"; do
        in_root "python$v" -VV 2>/dev/null | sed 's/^/[debian-pythons]   /' >&2 || say "  python$v: not installed"
    done
}

cmd_test() {
    [[ $# -ge 1 ]] || usage
    local v=$1
    shift
    [[ " ${VERSIONS[*]} " == *" $v "* ]] || die "unknown version $v (one of: ${VERSIONS[*]})"
    setup
    mount_all
    make_venv "$v"
    local venv=/opt/venv-$v
    say "$(in_root "$venv/bin/python" -VV)"
    if [[ -s $ROOT$venv/.autopar-missing ]]; then
        say "test-extra packages that do not install on $v (log: $ROOT$venv/install.log): $(tr '\n' ' ' <"$ROOT$venv/.autopar-missing")"
    fi
    local status=0
    if [[ -z ${AUTOPAR_RERUN_FAILED:-} ]]; then
        run_pytest "$v" -p no:cacheprovider "$@" || status=$?
        return "$status"
    fi
    # pytest's cache (which tests failed) lives in the chroot, never in the checkout.
    local cache=/tmp/autopar-pytest-cache-$v
    rm -rf "$ROOT$cache"
    run_pytest "$v" -o "cache_dir=$cache" "$@" || status=$?
    if [[ $status -eq 1 ]]; then
        # A test that failed once may have met a loaded machine: it runs once more, alone; a real
        # failure fails again.  The first failures stay in the log above.
        say "pytest on $v: rerunning the tests that failed, once"
        status=0
        run_pytest "$v" -o "cache_dir=$cache" --last-failed --last-failed-no-failures=none "$@" || status=$?
    fi
    return "$status"
}

run_pytest() {  # run_pytest VERSION PYTEST-ARGS...
    local v=$1
    shift
    run_python "$v" -m pytest "$@"
}

run_python() {  # run_python VERSION PYTHON-ARGS...
    local v=$1 venv=/opt/venv-$1 status=0
    shift
    # In the background, so that Ctrl-C reaches the traps at once (cleanup stops the run).
    timeout --kill-after=30s "$TEST_TIMEOUT" \
        env -i "PATH=/usr/sbin:/usr/bin:/sbin:/bin" chroot "$ROOT" /bin/sh -c 'cd /src && exec "$@"' sh \
        env HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 "TERM=${TERM:-dumb}" "AUTOPAR_RUN=$RUN_TOKEN" \
        "PATH=$venv/bin:/usr/local/bin:/usr/bin:/bin" ${CI:+CI=$CI} \
        "$venv/bin/python" "$@" </dev/null &
    TEST_PID=$!
    wait "$TEST_PID" || status=$?
    TEST_PID=
    if [[ $status -eq 124 || $status -eq 137 ]]; then
        say "python$v did not finish within $TEST_TIMEOUT: stopped"
    fi
    kill_leftovers
    return "$status"
}

cmd_run() {
    [[ $# -ge 1 ]] || usage
    local v=$1
    shift
    [[ " ${VERSIONS[*]} " == *" $v "* ]] || die "unknown version $v (one of: ${VERSIONS[*]})"
    setup
    mount_all
    make_venv "$v"
    run_python "$v" "$@"
}

case $1 in
setup) cmd_setup ;;
run)
    shift
    cmd_run "$@"
    ;;
test)
    shift
    cmd_test "$@"
    ;;
*) usage ;;
esac
